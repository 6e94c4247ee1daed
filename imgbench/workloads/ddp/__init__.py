"""The ddp family: data-parallel workers (torchrun), their launcher, and the world sizes swept."""
