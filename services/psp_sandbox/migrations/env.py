from amana_common.migrations import run_env
from psp_sandbox.models import Base

run_env(Base.metadata)
