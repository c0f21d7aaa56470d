# The unified-perspective study (issue #8, docs/study.md): the collapse
# experiments of Zhang et al., "How Does SimSiam Avoid Collapse Without
# Negative Samples?" (ICLR 2022) on Fashion-MNIST (or MNIST) with a small
# ConvNet: 14 loss variants (docs/paper.md) x 3 seeds, the decompose
# analyzer on z and p, kNN on z (epoch 0 = the random-init baseline) and a
# linear probe on the backbone at the start and the end.
#
#   sslrun run pipelines/paper/unified.hcl                   # full: 42 runs, 20k images x 10 epochs, hours
#   sslrun run pipelines/paper/unified.hcl -var quick=true   # quick: 14 runs, 10k images x 3 epochs, 1 seed
#   sslrun run pipelines/paper/unified.hcl -var dataset=mnist -var quick=true
#   sslrun run pipelines/paper/unified.hcl -var quick=true -var last_bn=none -var database=paper-quick-nobn.db
#   sslrun compare --db paper-quick.db --study unified
#
# The full study and the quick variant write to different databases
# (paper.db, paper-quick.db) so that `compare` never mixes them. docs/study.md
# has the measured wall times and results.

variable "quick" {
  type        = bool
  default     = false
  description = "The quick variant: 10k training images, 3 epochs, one seed, kNN and linear probe on 10k/2k images."
}

variable "dataset" {
  type        = string
  default     = "fashion-mnist"
  description = "fashion-mnist or mnist."
}

variable "seeds" {
  type        = list(number)
  default     = []
  description = "Seeds of every variant; empty = [0, 1, 2] (full) or [0] (quick)."
}

variable "epochs" {
  type        = number
  default     = 0
  description = "Training epochs; 0 = 10 (full) or 3 (quick)."
}

variable "images" {
  type        = number
  default     = -1
  description = "Training images (the first ones of the training split); -1 = 20000 (full) or 10000 (quick), 0 = all 60000."
}

variable "database" {
  type        = string
  default     = ""
  description = "Run database; empty = paper.db (full) or paper-quick.db (quick)."
}

variable "last_bn" {
  type        = string
  default     = "plain"
  description = "BatchNorm on the projector's output: none, or plain (SimSiam's affine-free BN, which keeps every dimension zero-mean over the batch and so prevents collapse to a point; docs/study.md)."
}

variable "lr" {
  type        = number
  default     = 0.2
  description = "Base learning rate (SGD, linear scaling by batch/256)."
}

locals {
  stats = {
    "fashion-mnist" = { mean = 0.2860, std = 0.3530 }
    "mnist"         = { mean = 0.1307, std = 0.3081 }
  }
  epochs   = var.epochs > 0 ? var.epochs : (var.quick ? 3 : 10)
  images   = var.images >= 0 ? var.images : (var.quick ? 10000 : 20000)
  database = var.database != "" ? var.database : (var.quick ? "paper-quick.db" : "paper.db")
}

study "unified" {
  description = "Zhang et al. ICLR 2022: which loss variants collapse, and the gradient's centre/residual split"

  matrix {
    seed = length(var.seeds) > 0 ? var.seeds : slice([0, 1, 2], 0, var.quick ? 1 : 3)
  }

  # SimSiam: -P_a . sg(Z_b). Learns, does not collapse.
  run "simsiam" {
    tags = { variant = "simsiam", method = "simsiam" }
  }

  # -P_a . Z_b: collapses fast.
  run "simsiam-no-sg" {
    tags = { variant = "simsiam-no-sg", method = "simsiam" }
    loss "simsiam" {
      stop_gradient = false
    }
  }

  # Naive Siamese, no predictor: -Z_a . sg(Z_b). Collapses.
  run "naive-siamese" {
    tags = { variant = "naive-siamese", method = "simsiam" }
    encoder {
      projector {
        dims    = [512, 512]
        last_bn = var.last_bn
      }
      predictor {
        kind = "none"
      }
    }
    loss "simsiam" {
      predictor = "none"
    }
  }

  # Symmetric predictor: -P_a . sg(P_b). Collapses, in p: the predictor
  # maps every image to one point within ~40 steps (m_o of p 0.999, with
  # either last_bn), after which P_a = P_b leaves no gradient for the
  # encoder and z stays where it was. Read its collapse on p, not z.
  run "symmetric-predictor" {
    tags = { variant = "symmetric-predictor", method = "simsiam" }
    loss "simsiam" {
      target = "p"
    }
  }

  # Only the centre of the extra gradient: -P_a . sg(P_b + o_e). Avoids collapse.
  run "extra-center" {
    tags = { variant = "extra-center", method = "simsiam" }
    loss "simsiam" {
      target = "p+center"
    }
  }

  # Only its residual: -P_a . sg(P_b + r_e). Avoids collapse.
  run "extra-residual" {
    tags = { variant = "extra-residual", method = "simsiam" }
    loss "simsiam" {
      target = "p+residual"
    }
  }

  # Bias-only predictor h(Z) = Z + b, b added to the l2-normalized
  # projection (core/nn.BiasOnly, as in Zhang et al.'s code; on the
  # unnormalized z, b would have to grow to ||z|| and stays negligible).
  # Avoids collapse: b follows the centre, so P is more centred than Z and
  # the extra gradient Z_b - P_b de-centers (eta < 0).
  run "bias-predictor" {
    tags = { variant = "bias-predictor", method = "simsiam" }
    encoder {
      projector {
        dims    = [512, 512]
        last_bn = var.last_bn
      }
      predictor {
        kind = "bias"
      }
    }
    loss "simsiam" {
      predictor = "bias"
    }
  }

  # Triplet with one negative: -Z_a . sg(Z_b - Z_n). Learns.
  run "triplet-full" {
    tags = { variant = "triplet-full", method = "triplet" }
    encoder {
      projector {
        dims    = [512, 512]
        last_bn = var.last_bn
      }
      predictor {
        kind = "none"
      }
    }
    loss "triplet" {
      negative = "full"
    }
    optimizer {
      predictor_fixed_lr = false
    }
  }

  # Centre of the negatives only: -Z_a . sg(Z_b - mean(Z_n)). Learns.
  run "triplet-center" {
    tags = { variant = "triplet-center", method = "triplet" }
    encoder {
      projector {
        dims    = [512, 512]
        last_bn = var.last_bn
      }
      predictor {
        kind = "none"
      }
    }
    loss "triplet" {
      negative = "center"
    }
    optimizer {
      predictor_fixed_lr = false
    }
  }

  # Residual of the negatives only: -Z_a . sg(Z_b - (Z_n - mean(Z_n))). Collapses.
  run "triplet-residual" {
    tags = { variant = "triplet-residual", method = "triplet" }
    encoder {
      projector {
        dims    = [512, 512]
        last_bn = var.last_bn
      }
      predictor {
        kind = "none"
      }
    }
    loss "triplet" {
      negative = "residual"
    }
    optimizer {
      predictor_fixed_lr = false
    }
  }

  # SimCLR (NT-Xent) at three temperatures; same projector as SimSiam, no predictor.
  run "simclr-t0.1" {
    tags = { variant = "simclr-t0.1", method = "simclr" }
    encoder {
      projector {
        dims    = [512, 512]
        last_bn = var.last_bn
      }
      predictor {
        kind = "none"
      }
    }
    loss "simclr" {
      temperature = 0.1
    }
    optimizer {
      predictor_fixed_lr = false
    }
  }

  run "simclr-t0.5" {
    tags = { variant = "simclr-t0.5", method = "simclr" }
    encoder {
      projector {
        dims    = [512, 512]
        last_bn = var.last_bn
      }
      predictor {
        kind = "none"
      }
    }
    loss "simclr" {
      temperature = 0.5
    }
    optimizer {
      predictor_fixed_lr = false
    }
  }

  run "simclr-t1.0" {
    tags = { variant = "simclr-t1.0", method = "simclr" }
    encoder {
      projector {
        dims    = [512, 512]
        last_bn = var.last_bn
      }
      predictor {
        kind = "none"
      }
    }
    loss "simclr" {
      temperature = 1.0
    }
    optimizer {
      predictor_fixed_lr = false
    }
  }

  # BYOL: EMA target (tau 0.99 -> 1), predictor, same projector and predictor as SimSiam.
  run "byol" {
    tags = { variant = "byol", method = "byol" }
    loss "byol" {
      tau_base = 0.99
    }
    optimizer {
      predictor_fixed_lr = false
    }
  }
}

run {
  epochs     = local.epochs
  batch_size = 256
  database   = local.database
  tags       = { variant = "simsiam", method = "simsiam" }
}

dataset "train" {
  source = var.dataset
  split  = "train"
  limit  = local.images
}

# kNN memory bank and linear-probe training set: the first 10000 (quick)
# or 20000 (full) images of the training split.
dataset "memory" {
  source = var.dataset
  split  = "train"
  limit  = var.quick ? 10000 : 20000
}

dataset "test" {
  source = var.dataset
  split  = "test"
  limit  = var.quick ? 2000 : 0
}

augment {
  view {
    random_resized_crop {
      size  = [28]
      scale = [0.3, 1.0]
    }
    # Two crops of one image share its intensity and stroke statistics;
    # without brightness/contrast jitter and blur the encoder learns those
    # instead of shapes (docs/study.md, "Recipe").
    color_jitter {
      brightness = 0.8
      contrast   = 0.8
      p          = 0.8
    }
    gaussian_blur {
      kernel = 3
      sigma  = [0.1, 1.0]
      p      = 0.5
    }
    normalize {
      mean = [local.stats[var.dataset].mean]
      std  = [local.stats[var.dataset].std]
    }
  }
}

encoder {
  backbone = "convnet"
  widths   = [32, 64, 128]
  strides  = [2, 2, 2]
  projector {
    dims    = [512, 512]
    last_bn = var.last_bn
  }
  predictor {
    kind = "mlp"
    dims = [128, 512]
  }
}

loss "simsiam" {
  stop_gradient = true
  target        = "z"
  predictor     = "mlp"
}

optimizer {
  name               = "sgd"
  lr                 = var.lr
  lr_scaling         = "linear"
  momentum           = 0.9
  weight_decay       = 5e-4
  predictor_fixed_lr = true
}

schedule {
  name          = "warmup_cosine"
  warmup_epochs = 0
}

analyzer "decompose" {
  every   = var.quick ? 5 : 20
  tensors = ["z", "p"]
}

# Epoch 0 (at_start) is the random-init baseline of both protocols. kNN
# reads z, the tensor whose collapse the study is about (run_final reports
# knn_at_chance beside its geometric verdict; even a z collapsed to m_o
# 0.999 keeps kNN far above chance: docs/study.md). The linear probe reads
# the backbone: what the encoder learned.
evaluate "knn" {
  train        = dataset.memory
  test         = dataset.test
  feature      = "z"
  k            = 200
  temperature  = 0.1
  every_epochs = var.quick ? 1 : 2
}

evaluate "linear" {
  train    = dataset.memory
  test     = dataset.test
  at_start = true
  epochs   = 100 # on precomputed features: seconds
}

checkpoint {
  every_epochs = 0
  keep         = 1
}
