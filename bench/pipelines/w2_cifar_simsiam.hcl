# W2 of ../shared/bench/torch_baseline.py as a full sslrun pipeline: the
# convnet-cifar network (conv3x3 64/128/256/512, strides 1/2/2/2, BN, ReLU,
# global average pool; projector 512-512-512 with BatchNorm1d(affine=False)
# last; predictor 512-128-512), SimSiam, batch 256, SGD lr 0.05 (constant)
# momentum 0.9 weight decay 5e-4, with SimSiam's CIFAR views (crop, flip,
# colour jitter, grayscale, normalize), recorded in a run database.
#
# There is no CIFAR-10 on this machine: bench/compare.py writes CIFAR-10
# binary files of random pixels (same format, shape and size per record)
# into data_dir; the augmentations' cost does not depend on the pixels.

variable "threads" {
  type    = number
  default = 2
}

variable "steps" {
  type        = number
  default     = 10
  description = "Training steps (one epoch of steps x 256 images)."
}

variable "database" {
  type    = string
  default = "bench.db"
}

variable "data_dir" {
  type        = string
  description = "A directory with CIFAR-10 binary files (data_batch_1.bin ... data_batch_5.bin)."
}

run {
  name       = "bench-w2-simsiam"
  seed       = 0
  epochs     = 1
  batch_size = 256
  database   = var.database
  threads    = var.threads
  tags       = { bench = "W2", method = "simsiam" }
}

dataset "train" {
  source = "cifar10"
  split  = "train"
  dir    = var.data_dir
  limit  = 256 * var.steps
}

augment {
  views = 2
  view {
    random_resized_crop {
      size  = [32]
      scale = [0.2, 1.0]
    }
    hflip {
      p = 0.5
    }
    color_jitter {
      brightness = 0.4
      contrast   = 0.4
      saturation = 0.4
      hue        = 0.1
      p          = 0.8
    }
    grayscale {
      p = 0.2
    }
    normalize {
      mean = [0.4914, 0.4822, 0.4465]
      std  = [0.2470, 0.2435, 0.2616]
    }
  }
}

encoder {
  backbone = "convnet"
  widths   = [64, 128, 256, 512]
  strides  = [1, 2, 2, 2]
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
