// Package decompose is the analysis math of sslrun's "decompose" analyzer:
// the vector decomposition of Zhang et al., "How Does SimSiam Avoid Collapse
// Without Negative Samples?" (ICLR 2022), the classic collapse metrics and
// RankMe's effective rank, as pure functions of embedding and gradient
// tensors. The analyzer plugin (a go-plugin subprocess) wraps these; nothing
// here knows about plugins, tapes or the run database.
//
// # API
//
// An Analyzer holds float64 scratch buffers that are reused between calls;
// New returns one, and the package-level Embeddings, Gradient, ExtraGradient
// and ExtraGradientPair use a fresh one each (convenient, allocating). An
// Analyzer is not safe for concurrent use.
//
//	a := decompose.New()
//	st, err := a.Embeddings(z, decompose.Options{Tensor: "z", Scope: "batch"})
//	metrics, arrays := st.Metrics(), st.Arrays()
//	gs, err := a.Gradient(z, dLdz, decompose.Options{Tensor: "z"})
//	es, err := a.ExtraGradientPair(z1, z2, p1, p2, decompose.Options{Tensor: "p"})
//	collapsed, why := decompose.Collapsed(st, knnTop1, 0.1)
//
// Inputs are core/tensor.T with shape [N, ...]: rows are samples and all
// other dimensions are flattened into d channels. Results are returned as
// Stats structs whose Metrics and Arrays methods give database rows:
// Metric{Key, Value, Context} and Array{Key, Shape, Data, Context}. Keys have
// no slashes and no analyzer prefix: the caller prepends "decompose/". The
// context is {"tensor": Options.Tensor ("z", "p", "feature"), "scope":
// Options.Scope ("batch" or "eval"), "batch": the number of rows the
// statistic is over (Options.Batch overrides it)}; one map is shared by all
// the rows of a call and must be treated as read-only.
//
// All accumulation is in float64 on a float64 copy of the input.
//
// # Embedding metrics (Embeddings)
//
// With x the [N, d] input, Z_m = x_m / max(||x_m||, 1e-12) (F.normalize),
// o = (1/N) sum_m Z_m, r_m = Z_m - o:
//
//	m_o          ||o||
//	m_r          (1/N) sum_m ||r_m||
//	identity_err |m_o^2 + (1/N) sum_m ||r_m||^2 - 1|; exact identity for unit
//	             rows, so this is ~1e-16 in float64; larger means zero or
//	             non-finite rows
//	noise_floor  1/sqrt(N): E||o||^2 = 1/N for N independent random unit vectors
//	m_o_sqrt_n   m_o * sqrt(N): ~1 for random directions, sqrt(N) at collapse
//	std          (1/d) sum_i std_i, std_i the UNBIASED (N-1) standard
//	             deviation of channel i of Z over the rows (torch.std's
//	             default, as in solo-learn and lightly)
//	std_sqrt_d   std * sqrt(d): ~1 for random directions, 0 at collapse
//	offdiag_cov  (1/d) sum_{i!=j} C_ij^2 with C = r^T r / (N-1) the
//	             covariance of Z
//	eff_rank     RankMe on Z (normalized, NOT centered): exp(H(s/sum s)),
//	             H(p) = -sum_k p_k log p_k (0 log 0 = 0), s the singular
//	             values of the [N, d] matrix Z
//	eff_rank_residual  the same on r (Z centered): separates collapse to a
//	             point (eff_rank ~1, residual small) from dimensional
//	             collapse (eff_rank_residual small)
//
// eff_rank deviates from RankMe (Garrido et al., 2023) in two documented
// ways: RankMe takes the unnormalized embeddings (here they are normalized,
// like every other metric of the paper's decomposition) and adds 1e-7 to p_k
// (here it does not; the difference is below 1e-4 for d <= 2048).
//
// Arrays: "spectrum" and "residual_spectrum", the singular values of Z and
// of r in descending order, of length min(N, d). They are the square roots
// of the eigenvalues of the d x d matrix Z^T Z when d <= N, and of the N x N
// Gram matrix Z Z^T otherwise (same nonzero eigenvalues, much cheaper for
// N=512, d=2048); negative round-off eigenvalues are clamped to 0. The
// residual Gram is obtained from Z's by double centering, and offdiag_cov
// uses ||r^T r||_F = ||r r^T||_F so the d x d covariance is never formed
// when N < d. Options.SkipSpectrum skips the eigen-decompositions (then
// eff_rank, eff_rank_residual and the arrays are absent).
//
// # Cost
//
// The Gram matrix and the two eigen-decompositions dominate. The N x N Gram
// is computed on core/parallel's pool and the two eigen-decompositions run
// on two workers. Measured on the shared 2-core machine (loaded): N=512 with
// d=512 or d=2048 takes 0.6-0.95 s per call, 0.2 s with SkipSpectrum; a
// 2048 x 2048 eigen-decomposition alone took 38 s against 0.26 s for
// 512 x 512, which is why the N x N Gram is used when N < d. An evaluation
// set with N >= d = 2048 needs that 2048 x 2048 decomposition: use
// SkipSpectrum or pass a subsample of at most ~1024 rows for the spectrum.
//
// # Gradient metrics (Gradient)
//
// The paper analyses the gradient acting on the NORMALIZED vectors Z. The
// trainer has g = dL/dz on the raw projection. Since
// dL/dz = (I - Z Z^T) dL/dZ / ||z||, dL/dZ is known only up to its radial
// component, which is a no-op after normalization; Gradient therefore uses
// the tangential gradient
//
//	g_m = ||z_m|| * (dL/dz)_m = (I - Z_m Z_m^T) (dL/dZ)_m.
//
// With Options.GradNormalized the input is taken to be dL/dZ itself (for
// example the paper's -dL/dP_a = Z_b) and used as is, or projected onto the
// tangent space first with Options.GradTangential.
//
// The update direction is u_m = -g_m. With o the centre of Z over the rows
// and e = o/||o|| (when o = 0 the centre part is taken to be 0):
//
//	c_m = <u_m, e>        signed: > 0 pushes Z_m towards the centre
//	                      (collapse), < 0 pushes it away (de-centering)
//	v_m = u_m - c_m e     the residual part (de-correlation)
//
// and, with S = sum_m ||u_m||^2:
//
//	grad_norm            (1/N) sum_m ||u_m||
//	grad_center_coef     (1/N) sum_m c_m = <mean_m u_m, e>      (signed)
//	grad_center_cos      mean over rows with u_m != 0 of c_m / ||u_m||
//	grad_center_norm     (1/N) sum_m |c_m|
//	grad_residual_norm   (1/N) sum_m ||v_m||
//	grad_center_share    sum_m c_m^2 / S
//	grad_decenter_share  sum_{m: c_m < 0} c_m^2 / S
//	grad_collapse_share  sum_{m: c_m > 0} c_m^2 / S
//	grad_decorr_share    sum_m ||v_m||^2 / S  (= 1 - grad_center_share)
//
// The norms are in the loss's units (they scale with the loss's 1/N); the
// shares and grad_center_cos are scale free.
//
// # Extra gradient (ExtraGradient, ExtraGradientPair)
//
// For predictor methods, -dL/dP_a = Z_b = P_b + G_e with the extra gradient
// G_e = Z_b - P_b (rows normalized). With o_e = mean_m G_e,m, r_e,m =
// G_e,m - o_e and o_p = mean_m P_b,m:
//
//	extra_eta      <o_e, o_p> / <o_p, o_p>: least-squares eta in o_e ~ eta*o_p
//	               (the paper finds about -0.5: de-centering)
//	extra_cos      cos(o_e, o_p)
//	extra_oe_norm  ||o_e||
//	extra_re_norm  (1/N) sum_m ||r_e,m||
//	extra_op_norm  ||o_p||
//
// ExtraGradientPair averages each metric over the two directions of the
// symmetric loss: (z_b, p_b) = (z2, p2) for the prediction of view 1, and
// (z1, p1) for view 2.
//
// # Verdicts
//
// Collapsed applies paper.md's rule: m_o > 0.9 or std_sqrt_d < 0.1, and,
// when a kNN accuracy is given, kNN top-1 within 0.05 of chance.
// NotConverged flags the other failure: the geometry is healthy (no
// collapse) but the kNN accuracy is still at chance.
//
// The analyzer plugin reports Collapsed's geometric verdict (no kNN) on
// the training batch's z, or on p when z is not measured: the tensors the
// rule is about. It never judges an evaluation set's embeddings, which are
// by default backbone features: post-ReLU, non-negative, so m_o > 0.9 by
// construction at random initialization.
package decompose
