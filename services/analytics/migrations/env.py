from amana_common.migrations import run_env
from analytics.models import Base

run_env(Base.metadata)
