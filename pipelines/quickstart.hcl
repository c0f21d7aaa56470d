# quickstart: SimSiam on MNIST with a small ConvNet. Meant to finish in a
# few minutes on 2 cores (20k training images, 5 epochs, kNN on a 10k/2k
# split). Run it with `sslrun run pipelines/quickstart.hcl`; change the
# length with `-var epochs=10`.
#
# The kNN accuracy at epoch 0 is the randomly initialised encoder: the
# baseline the final number is read against (about 0.64 -> 0.72 with seed
# 0; docs/study.md, "Recipe", has the experiments behind these settings).

variable "epochs" {
  type        = number
  default     = 5
  description = "Training epochs."
}

variable "seed" {
  type    = number
  default = 0
}

run {
  name       = "quickstart"
  seed       = var.seed
  epochs     = var.epochs
  batch_size = 256
  database   = "sslrun.db"
  tags       = { method = "simsiam", purpose = "quickstart" }
}

# MNIST ships with the GoMNIST Go module: no download needed.
dataset "train" {
  source = "mnist"
  split  = "train"
  limit  = 20000
}

dataset "memory" {
  source = "mnist"
  split  = "train"
  limit  = 10000
}

dataset "test" {
  source = "mnist"
  split  = "test"
  limit  = 2000
}

# A crop (digits are not mirror-symmetric, so no flip), then brightness,
# contrast and blur: two crops of one digit share its stroke width and ink
# level, and with crops alone the encoder learns those (writer style)
# instead of the digit, and the kNN accuracy falls below the random-init
# baseline.
augment {
  views = 2
  view {
    random_resized_crop {
      size  = [28]
      scale = [0.3, 1.0]
    }
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
      mean = [0.1307]
      std  = [0.3081]
    }
  }
}

# Three stride-2 3x3 conv layers (28 -> 14 -> 7 -> 4), global average pool:
# 128 features.
encoder {
  backbone = "convnet"
  widths   = [32, 64, 128]
  strides  = [2, 2, 2]
  projector {
    dims    = [512, 512]
    last_bn = "plain" # BatchNorm1d(affine=False), as SimSiam's projector
  }
  predictor {
    kind = "mlp"
    dims = [128, 512] # bottleneck d -> d/4 -> d
  }
}

loss "simsiam" {
  stop_gradient = true
  target        = "z"
  predictor     = "mlp"
}

optimizer {
  name               = "sgd"
  lr                 = 0.2
  lr_scaling         = "linear" # lr = 0.2 * batch_size / 256
  momentum           = 0.9
  weight_decay       = 5e-4
  predictor_fixed_lr = true
}

schedule {
  name          = "warmup_cosine"
  warmup_epochs = 0
}

analyzer "decompose" {
  every   = 20
  tensors = ["z", "p"]
}

evaluate "knn" {
  train        = dataset.memory
  test         = dataset.test
  k            = 200
  temperature  = 0.1
  every_epochs = 1
}

checkpoint {
  every_epochs = 0 # only at the end
  keep         = 1
}
