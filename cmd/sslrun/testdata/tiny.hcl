# tiny: SimSiam on 1024 MNIST images with a small MLP, for the CLI tests.

variable "epochs" {
  type    = number
  default = 2
}

variable "lr" {
  type    = number
  default = 0.05
}

variable "database" {
  type    = string
  default = "sslrun.db"
}

run {
  name       = "tiny"
  seed       = 7
  epochs     = var.epochs
  batch_size = 128
  database   = var.database
}

dataset "train" {
  source = "mnist"
  limit  = 1024
}

dataset "test" {
  source = "mnist"
  split  = "test"
  limit  = 256
}

augment {
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
  widths   = [64]
  projector {
    dims    = [32, 32]
    last_bn = "plain"
  }
  predictor {
    dims = [8, 32]
  }
}

loss "simsiam" {}

optimizer {
  name               = "sgd"
  lr                 = var.lr
  lr_scaling         = "linear"
  momentum           = 0.9
  weight_decay       = 5e-4
  predictor_fixed_lr = true
}

analyzer "decompose" {
  every   = 4
  tensors = ["z", "p"]
}

evaluate "knn" {
  train = dataset.train
  test  = dataset.test
  k     = 20
}

checkpoint {
  every_epochs = 1
  keep         = 1
}
