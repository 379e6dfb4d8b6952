from amana_common.migrations import run_env
from provider.models import Base

run_env(Base.metadata)
