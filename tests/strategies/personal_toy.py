"""A two-weight toy network and a one-batch MONAI trainer, for hand-computed strategy numbers."""

import torch
from monai.engines import SupervisedTrainer
from torch import nn
from torch.utils.data import DataLoader


class Toy(nn.Module):
    """``pred = task_head(body(x))``: a body and a head, each one bias-free Linear."""

    def __init__(self, features: int = 1) -> None:
        super().__init__()
        self.body = nn.Linear(features, features, bias=False)
        self.task_head = nn.Linear(features, 1, bias=False)
        for p in self.parameters():
            nn.init.ones_(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.task_head(self.body(x))


def toy_trainer(network: nn.Module, *, image, label, lr: float = 0.1, momentum: float = 0.0) -> SupervisedTrainer:
    """One batch per epoch (``image`` (1, F), ``label`` (1, 1)), SGD, MSE; ``max_epochs`` set per round."""
    data = [{"image": torch.tensor(image, dtype=torch.float32), "label": torch.tensor(label, dtype=torch.float32)}]
    return SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=0,
        train_data_loader=DataLoader(data, batch_size=1),
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=lr, momentum=momentum),
        loss_function=nn.MSELoss(),
    )


def run_round(strategy, network: nn.Module, trainer: SupervisedTrainer, local_epochs: int = 1) -> None:
    """The client's order: before_training -> the trainer for round_epochs -> after_training."""
    strategy.before_training(network, trainer)
    trainer.state.max_epochs = trainer.state.epoch + strategy.round_epochs(local_epochs)
    trainer.run()
    strategy.after_training(network, trainer)
