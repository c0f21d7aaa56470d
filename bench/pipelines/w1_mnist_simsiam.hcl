# W1 of ../shared/bench/torch_baseline.py as a full sslrun pipeline: the
# mlp-mnist network (784-1024-1024 MLP backbone, projector 1024-512-512 with
# BatchNorm1d(affine=False) last, predictor 512-128-512), SimSiam, batch 512,
# SGD lr 0.05 (constant) momentum 0.9 weight decay 5e-4, on real MNIST with
# MNIST crop views, recorded in a run database. bench/compare.py runs it with
# `sslrun run` and reads the time of every step's train/loss row.

variable "threads" {
  type    = number
  default = 2
}

variable "steps" {
  type        = number
  default     = 10
  description = "Training steps (one epoch of steps x 512 images)."
}

variable "database" {
  type    = string
  default = "bench.db"
}

run {
  name       = "bench-w1-simsiam"
  seed       = 0
  epochs     = 1
  batch_size = 512
  database   = var.database
  threads    = var.threads
  tags       = { bench = "W1", method = "simsiam" }
}

dataset "train" {
  source = "mnist"
  split  = "train"
  limit  = 512 * var.steps
}

augment {
  views = 2
  view {
    random_resized_crop {
      size  = [28]
      scale = [0.3, 1.0]
    }
    normalize {
      mean = [0.1307]
      std  = [0.3081]
    }
  }
}

encoder {
  backbone = "mlp"
  widths   = [1024, 1024]
  projector {
    dims    = [512, 512]
    last_bn = "plain"
  }
  predictor {
    kind = "mlp"
    dims = [128, 512]
  }
}

loss "simsiam" {}

optimizer {
  name         = "sgd"
  lr           = 0.05
  lr_scaling   = "none"
  momentum     = 0.9
  weight_decay = 5e-4
}

schedule {
  name = "constant"
}
