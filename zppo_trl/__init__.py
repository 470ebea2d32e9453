"""zppo-trl: ZPPO ("Teacher in Prompts, Not Gradients", arXiv 2606.18216) for Hugging Face TRL."""

# first: it silences a bitsandbytes log line that only matters before bitsandbytes is imported (by trl, via peft)
from . import quantization  # noqa: F401, I001
from .buffers.hard import BufferStateError, HardQuestionBuffer
from .config import ZPPOConfig
from .prompts import build_bcq_hint, build_ncq_hint
from .rewards import boxed_accuracy_reward
from .teachers import ColumnTeacher
from .templates import ANSWER_FORMAT_INSTRUCTION, BCQ_TEMPLATE, NCQ_TEMPLATE
from .trainer import ZPPOTrainer
from .version import __version__

__all__ = [
    "ANSWER_FORMAT_INSTRUCTION",
    "BCQ_TEMPLATE",
    "NCQ_TEMPLATE",
    "BufferStateError",
    "ColumnTeacher",
    "HardQuestionBuffer",
    "ZPPOConfig",
    "ZPPOTrainer",
    "__version__",
    "boxed_accuracy_reward",
    "build_bcq_hint",
    "build_ncq_hint",
]
