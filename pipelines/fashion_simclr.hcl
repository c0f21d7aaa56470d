# SimCLR (NT-Xent) on Fashion-MNIST with a small ConvNet. Fashion-MNIST comes from
# Debian's dataset-fashion-mnist package (/usr/share/datasets/fashion-mnist)
# or $SSLRUN_DATA/fashion-mnist.

variable "epochs" {
  type    = number
  default = 20
}

variable "seed" {
  type    = number
  default = 0
}

run {
  name       = "fashion-simclr"
  seed       = var.seed
  epochs     = var.epochs
  batch_size = 256
  tags       = { method = "simclr", dataset = "fashion-mnist" }
}

dataset "train" {
  source = "fashion-mnist"
  split  = "train"
}

dataset "test" {
  source = "fashion-mnist"
  split  = "test"
}

augment {
  view {
    random_resized_crop {
      size  = [28]
      scale = [0.2, 1.0]
    }
    hflip {
      p = 0.5
    }
    color_jitter {
      brightness = 0.4
      contrast   = 0.4
      p          = 0.8
    }
    normalize {
      mean = [0.2860]
      std  = [0.3530]
    }
  }
}

encoder {
  backbone = "convnet"
  widths   = [32, 64, 128]
  strides  = [1, 2, 2]
  projector {
    dims = [512, 128]
  }
  # No predictor: negatives prevent collapse.
}

loss "simclr" {
  temperature = 0.5
}

optimizer {
  name         = "sgd"
  lr           = 0.06
  lr_scaling   = "linear"
  momentum     = 0.9
  weight_decay = 5e-4
}

schedule {
  warmup_epochs = 0
}

analyzer "decompose" {
  every   = 50
  tensors = ["z"]
}

evaluate "knn" {
  train = dataset.train
  test  = dataset.test
}

evaluate "linear" {
  train  = dataset.train
  test   = dataset.test
  epochs = 20
}

checkpoint {
  every_epochs = 5
  keep         = 2
}
