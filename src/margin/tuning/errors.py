"""What can go wrong in distillation (docs/tuning.md): a dataset too small or malformed, a teacher
that does not exist, a job that cannot be promoted. Each message names the thing at fault."""

from __future__ import annotations

from margin.errors import MarginError


class TuningError(MarginError):
    status = 400
    type = "invalid_request_error"
    code = "tuning_error"


class DatasetError(TuningError):
    """A dataset that cannot be built or read: empty, too small, malformed, unknown."""

    code = "tuning_dataset_invalid"


class TeacherUnknown(TuningError):
    """The teacher names neither a tier of the group nor a model group of this gateway."""

    code = "tuning_teacher_unknown"


class PromotionRefused(TuningError):
    """A job that cannot become a candidate (not succeeded, no adapter, no eval set), or whose
    student failed the gate: nothing was changed."""

    code = "tuning_promotion_refused"


class TrainingError(TuningError):
    """A training job that cannot start or did not finish: the base model will not load, a checkpoint
    is corrupt, the disk filled, the conversion failed. The job's state is `failed` with this reason."""

    code = "tuning_training_failed"


class JobNotFound(TuningError):
    status = 404
    code = "tuning_job_not_found"


class JobBusy(TuningError):
    """Another training job holds this machine's lock (one job per machine by default), or the job
    named is still running."""

    status = 409
    code = "tuning_job_busy"
