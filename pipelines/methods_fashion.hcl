# Method comparison: SimSiam vs SimCLR vs BYOL on Fashion-MNIST, 3 seeds
# each (9 runs, tagged with the study "methods"). The top-level blocks are
# the shared defaults (SimSiam's); each run "..." block overrides them:
# arguments one by one, nested blocks (projector, predictor, view) whole.
# Runs are named <run>-seed<n>: simsiam-seed0 ... byol-seed2.
# `sslrun compare` then reports mean +- std over the seeds.

variable "epochs" {
  type    = number
  default = 20
}

study "methods" {
  description = "SimSiam vs SimCLR vs BYOL, same backbone, data and optimizer, 3 seeds"

  matrix {
    seed = [0, 1, 2]
  }

  run "simsiam" {}

  run "simclr" {
    encoder {
      projector {
        dims = [512, 128]
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

  run "byol" {
    encoder {
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
      predictor_fixed_lr = false
    }
  }
}

run {
  epochs     = var.epochs
  batch_size = 256
  tags       = { dataset = "fashion-mnist" }
}

dataset "train" {
  source = "fashion-mnist"
  split  = "train"
}

dataset "test" {
  source = "fashion-mnist"
  split  = "test"
}

# One augmentation for all three methods, so that the comparison isolates
# the loss (BYOL's own asymmetric views are in fashion_byol.hcl).
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
    dims    = [512, 512]
    last_bn = "plain"
  }
  predictor {
    dims = [128, 512]
  }
}

loss "simsiam" {}

optimizer {
  name               = "sgd"
  lr                 = 0.06
  lr_scaling         = "linear"
  momentum           = 0.9
  weight_decay       = 5e-4
  predictor_fixed_lr = true
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

checkpoint {
  every_epochs = 0
  keep         = 1
}
