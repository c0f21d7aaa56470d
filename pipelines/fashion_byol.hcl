# BYOL on Fashion-MNIST with a small ConvNet: asymmetric views (view one
# always blurs, view two blurs rarely and solarizes), an EMA target whose
# momentum goes from tau_base to 1 (the byol loss plugin), no stop-gradient
# trick beyond the target network.

variable "epochs" {
  type    = number
  default = 20
}

variable "seed" {
  type    = number
  default = 0
}

locals {
  # Both views share these steps; they differ in blur and solarize only.
  crop_scale = [0.08, 1.0]
  mean       = [0.2860]
  std        = [0.3530]
}

run {
  name       = "fashion-byol"
  seed       = var.seed
  epochs     = var.epochs
  batch_size = 256
  tags       = { method = "byol", dataset = "fashion-mnist" }
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
      scale = local.crop_scale
    }
    hflip {
      p = 0.5
    }
    color_jitter {
      brightness = 0.4
      contrast   = 0.4
      p          = 0.8
    }
    gaussian_blur {
      kernel = 3
      sigma  = [0.1, 2.0]
      p      = 1.0
    }
    normalize {
      mean = local.mean
      std  = local.std
    }
  }
  view {
    random_resized_crop {
      size  = [28]
      scale = local.crop_scale
    }
    hflip {
      p = 0.5
    }
    color_jitter {
      brightness = 0.4
      contrast   = 0.4
      p          = 0.8
    }
    gaussian_blur {
      kernel = 3
      sigma  = [0.1, 2.0]
      p      = 0.1
    }
    solarize {
      threshold = 0.5
      p         = 0.2
    }
    normalize {
      mean = local.mean
      std  = local.std
    }
  }
}

encoder {
  backbone = "convnet"
  widths   = [32, 64, 128]
  strides  = [1, 2, 2]
  projector {
    dims      = [512, 128]
    last_bias = true
  }
  predictor {
    dims = [512, 128]
  }
}

loss "byol" {
  tau_base = 0.99
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
  tensors = ["z", "p"]
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
