WITH v AS (
  -- The per-variant table of docs/study.md: one row per variant of the study
  -- (the run tag "variant"), averaged over its FINISHED seeds. Run with
  --   sslrun sql --db paper-quick.db "$(cat tools/study/table.sql)"
  -- Columns: collapsed = runs collapsed by run_final's rule / runs (docs/rundb.md,
  -- schema 3: final m_o > 0.9 or std*sqrt(d) < 0.1 on z, the geometry alone);
  -- knn_at_chance = runs whose kNN top-1 is below chance + 0.05 / runs (the
  -- condition schema 1-2 also required: collapsed AND knn_at_chance);
  -- m_o, m_r, std*sqrt(d), eff_rank, the gradient's de-centering and
  -- de-correlation shares: last logged training batch, tensor z; knn0/lin0:
  -- the random-init encoder (epoch 0), knn/lin: the end of training; eta: the
  -- extra gradient's o_e ~ eta*o_p (predictor methods), last logged batch;
  -- m_o_p: m_o of the predictor output p (the tensor the symmetric
  -- predictor collapses: its loss compares p with p), empty without one.
  SELECT f.*, t.value AS variant_tag,
    (SELECT e.top1 FROM evaluations e WHERE e.run_id = f.run_id AND e.protocol = 'knn'
       AND e.epoch = 0 ORDER BY e.id LIMIT 1) AS knn0,
    (SELECT e.top1 FROM evaluations e WHERE e.run_id = f.run_id AND e.protocol = 'linear'
       AND e.epoch = 0 ORDER BY e.id LIMIT 1) AS lin0,
    (SELECT s.last_value FROM series s WHERE s.run_id = f.run_id AND s.key = 'decompose/extra_eta'
       ORDER BY s.last_step DESC LIMIT 1) AS eta,
    (SELECT s.last_value FROM series s WHERE s.run_id = f.run_id AND s.key = 'decompose/m_o'
       AND json_extract(s.context, '$.tensor') = 'p' AND ifnull(json_extract(s.context, '$.scope'), '') <> 'eval'
       ORDER BY s.last_step DESC LIMIT 1) AS m_o_p
  FROM run_final f JOIN tags t ON t.run_id = f.run_id AND t.key = 'variant'
  WHERE f.status = 'FINISHED' AND f.study = 'unified'
)
SELECT variant_tag AS variant, count(*) AS runs,
  ifnull(sum(collapsed), 0) || '/' || count(*) AS collapsed,
  ifnull(sum(knn_at_chance), 0) || '/' || count(*) AS knn_at_chance,
  printf('%.3f', avg(m_o)) AS m_o,
  CASE WHEN count(m_o_p) > 0 THEN printf('%.3f', avg(m_o_p)) ELSE '' END AS m_o_p,
  printf('%.3f', avg(m_r)) AS m_r,
  printf('%.3f', avg(std_sqrt_d)) AS std_sqrt_d, printf('%.1f', avg(eff_rank)) AS eff_rank,
  printf('%.3f', avg(knn0)) AS knn0, printf('%.3f', avg(knn_top1)) AS knn,
  printf('%.3f', min(knn_top1)) || '-' || printf('%.3f', max(knn_top1)) AS knn_range,
  printf('%.3f', avg(lin0)) AS lin0, printf('%.3f', avg(linear_top1)) AS lin,
  printf('%.3f', avg(grad_decenter_share)) AS decenter,
  printf('%.3f', avg(grad_decorr_share)) AS decorr,
  CASE WHEN count(eta) > 0 THEN printf('%.3f', avg(eta)) ELSE '' END AS eta
FROM v GROUP BY variant_tag ORDER BY min(run_id);
