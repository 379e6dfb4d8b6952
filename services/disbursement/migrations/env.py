from amana_common.migrations import run_env
from disbursement.models import Base

run_env(Base.metadata)
