# BYOL, CIFAR-10, ResNet-18 (CIFAR stem): solo-learn's published recipe
# (scripts/pretrain/cifar/byol.yaml + augmentations/asymmetric.yaml;
# solo-learn reports 92.58% online linear after 1000 epochs at batch 256).
# Needs the CIFAR-10 binary version under $SSLRUN_DATA/cifar-10-batches-bin
# (see docs/data.md) and a lot of CPU time: this is for users who have both.
#
# Departures from solo-learn: solo-learn evaluates with an online linear
# classifier; here a kNN runs every 10 epochs and a linear probe at the end.
# solo-learn's BYOL projector and predictor have a BatchNorm only in their
# hidden layer, as core/nn's MLP heads do.

variable "epochs" {
  type    = number
  default = 1000
}

variable "seed" {
  type    = number
  default = 0
}

run {
  name       = "cifar10-byol"
  seed       = var.seed
  epochs     = var.epochs
  batch_size = 256
  tags       = { method = "byol", dataset = "cifar10", recipe = "solo-learn" }
}

dataset "train" {
  source = "cifar10"
  split  = "train"
}

dataset "test" {
  source = "cifar10"
  split  = "test"
}

# solo-learn's asymmetric views: only the second solarizes (p 0.2).
augment {
  view {
    random_resized_crop {
      size  = [32]
      scale = [0.08, 1.0]
    }
    color_jitter {
      brightness = 0.4
      contrast   = 0.4
      saturation = 0.2
      hue        = 0.1
      p          = 0.8
    }
    grayscale {
      p = 0.2
    }
    hflip {
      p = 0.5
    }
    normalize {
      mean = [0.4914, 0.4822, 0.4465]
      std  = [0.2470, 0.2435, 0.2616]
    }
  }
  view {
    random_resized_crop {
      size  = [32]
      scale = [0.08, 1.0]
    }
    color_jitter {
      brightness = 0.4
      contrast   = 0.4
      saturation = 0.2
      hue        = 0.1
      p          = 0.8
    }
    grayscale {
      p = 0.2
    }
    solarize {
      threshold = 0.5
      p         = 0.2
    }
    hflip {
      p = 0.5
    }
    normalize {
      mean = [0.4914, 0.4822, 0.4465]
      std  = [0.2470, 0.2435, 0.2616]
    }
  }
}

encoder {
  backbone = "resnet18"
  projector {
    dims      = [4096, 256] # proj_hidden_dim 4096, proj_output_dim 256
    last_bias = true
  }
  predictor {
    dims = [4096, 256] # pred_hidden_dim 4096
  }
}

loss "byol" {
  tau_base = 0.99 # to 1.0 with a cosine schedule
}

optimizer {
  name              = "lars"
  lr                = 1.0
  lr_scaling        = "linear" # solo-learn scales lr by batch_size / 256
  momentum          = 0.9
  weight_decay      = 1e-5
  eta               = 0.02
  clip_lr           = true
  exclude_bias_norm = true
}

# solo-learn's defaults: warmup_cosine, 10 warmup epochs from 3e-5, per step.
schedule {
  name            = "warmup_cosine"
  warmup_epochs   = 10
  warmup_start_lr = 3e-5
  min_lr          = 0
  per_step        = true
}

analyzer "decompose" {
  every   = 100
  tensors = ["z", "p"]
}

evaluate "knn" {
  train        = dataset.train
  test         = dataset.test
  every_epochs = 10
}

evaluate "linear" {
  train  = dataset.train
  test   = dataset.test
  epochs = 100
  lr     = 0.1
}

checkpoint {
  every_epochs = 10
  keep         = 2
}
