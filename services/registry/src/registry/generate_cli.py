"""`python -m registry generate`: write a synthetic population to files, or load it."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from uuid import UUID

import uvloop
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from amana_common.db import create_database
from amana_common.settings import database_url_for
from registry.generate import (
    GeneratedHousehold,
    Generator,
    GeneratorConfig,
    ProviderOption,
    load,
    write_files,
)
from registry.reference import load_locations
from registry.settings import REFERENCE


class GenerateSettings(BaseSettings):
    """What the generator reads of the registry's configuration (no secrets needed)."""

    model_config = SettingsConfigDict(env_prefix="REGISTRY_", extra="ignore")

    locations_csv: Path = REFERENCE / "locations_ke.csv"
    database_url: str = Field(default_factory=lambda: database_url_for("registry"))


def _providers(path: Path | None) -> tuple[ProviderOption, ...]:
    """A JSON list of {"provider_id", "mechanism", "currency", "pay_point_ids",
    "service_areas"}."""
    if path is None:
        return ()
    return tuple(
        ProviderOption(
            provider_id=UUID(item["provider_id"]),
            mechanism=item["mechanism"],
            currency=item.get("currency", "KES"),
            pay_point_ids=tuple(UUID(p) for p in item.get("pay_point_ids", [])),
            service_areas=tuple(item.get("service_areas", [])),
        )
        for item in json.loads(path.read_text(encoding="utf-8"))
    )


def _arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m registry generate")
    parser.add_argument("--households", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--locale", default="en_KE", help="a Faker locale: en_KE, sw, en_NG, ...")
    parser.add_argument("--duplicate-rate", type=float, default=0.02)
    parser.add_argument("--disability-rate", type=float, default=0.05)
    parser.add_argument("--providers", type=Path, help="JSON list of provider options")
    parser.add_argument("--out", type=Path, help="write households.ndjson, .csv and truth.csv")
    parser.add_argument(
        "--load", action="store_true", help="COPY into REGISTRY_DATABASE_URL (no events)"
    )
    arguments = parser.parse_args(argv)
    if not arguments.out and not arguments.load:
        parser.error("give --out DIRECTORY, --load, or both")
    return arguments


def generate_main(argv: Sequence[str]) -> int:
    arguments = _arguments(argv)
    settings = GenerateSettings()
    config = GeneratorConfig(
        households=arguments.households,
        seed=arguments.seed,
        locale=arguments.locale,
        duplicate_rate=arguments.duplicate_rate,
        disability_rate=arguments.disability_rate,
        providers=_providers(arguments.providers),
    )
    started = time.monotonic()
    households = list(Generator(config, load_locations(settings.locations_csv)).households())
    members = sum(len(h.body["members"]) for h in households)
    print(
        f"generated {len(households)} households, {members} members "
        f"in {time.monotonic() - started:.1f}s"
    )
    if arguments.out:
        for path in write_files(households, arguments.out):
            print(f"wrote {path}")
    if arguments.load:
        uvloop.run(_load(settings.database_url, households))
    return 0


async def _load(url: str, households: list[GeneratedHousehold]) -> None:
    database = create_database(url, pool_size=1)
    try:
        started = time.monotonic()
        loaded = await load(database, households)
        print(f"loaded {loaded} households in {time.monotonic() - started:.1f}s")
    finally:
        await database.dispose()
