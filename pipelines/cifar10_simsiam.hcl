# SimSiam, CIFAR-10, ResNet-18 (CIFAR stem): solo-learn's published recipe
# (scripts/pretrain/cifar/simsiam.yaml + augmentations/symmetric_weak.yaml;
# solo-learn reports 90.51% online linear after 1000 epochs at batch 256).
# Needs the CIFAR-10 binary version under $SSLRUN_DATA/cifar-10-batches-bin
# (see docs/data.md) and a lot of CPU time: this is for users who have both.
#
# Departures from solo-learn, forced by core/data/augment: the Gaussian
# blur needs a kernel size (3, a tenth of the image, made odd; solo-learn's
# PIL blur has none). solo-learn evaluates with an online linear classifier;
# here a kNN runs every 10 epochs and a linear probe at the end.

variable "epochs" {
  type    = number
  default = 1000
}

variable "seed" {
  type    = number
  default = 0
}

run {
  name       = "cifar10-simsiam"
  seed       = var.seed
  epochs     = var.epochs
  batch_size = 256
  tags       = { method = "simsiam", dataset = "cifar10", recipe = "solo-learn" }
}

dataset "train" {
  source = "cifar10"
  split  = "train"
}

dataset "test" {
  source = "cifar10"
  split  = "test"
}

augment {
  view {
    random_resized_crop {
      size  = [32]
      scale = [0.08, 1.0]
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
    gaussian_blur {
      kernel = 3
      sigma  = [0.1, 2.0]
      p      = 0.5
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
    dims    = [2048, 2048, 2048] # proj_hidden_dim 2048, proj_output_dim 2048
    last_bn = "plain"
  }
  predictor {
    dims = [512, 2048] # pred_hidden_dim 512
  }
}

loss "simsiam" {}

optimizer {
  name               = "sgd"
  lr                 = 0.5
  lr_scaling         = "linear" # solo-learn scales lr by batch_size / 256
  momentum           = 0.9
  weight_decay       = 1e-5
  predictor_fixed_lr = true # solo-learn's static_lr for the predictor
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
