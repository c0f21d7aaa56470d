# quickstart: SimSiam on MNIST with a small MLP. Meant to finish in a few
# minutes on 2 cores (20k training images, 5 epochs, kNN on a 10k/2k
# split). Run it with `sslrun run pipelines/quickstart.hcl`; change the
# length with `-var epochs=10`.

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

# core/data/augment's MNISTView: a crop (digits are not mirror-symmetric,
# so no flip) and MNIST's channel statistics.
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
  widths   = [512, 512]
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
  lr                 = 0.05
  lr_scaling         = "linear" # lr = 0.05 * batch_size / 256
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
