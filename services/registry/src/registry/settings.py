from amana_common.settings import ServiceSettings, service_config


class RegistrySettings(ServiceSettings):
    """Registry configuration: every field can be set as `REGISTRY_<FIELD>`."""

    model_config = service_config("REGISTRY_")

    service_name: str = "registry"
    port: int = 8101
    max_members_per_household: int = 50
