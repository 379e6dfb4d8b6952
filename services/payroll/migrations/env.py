from amana_common.migrations import run_env
from payroll.models import Base

run_env(Base.metadata)
