"""What the router, egress and the archiver follow from their start: the catalog in force and the signed rule sets,
read in that order (a rule set is checked against the catalog's types).
"""
from __future__ import annotations

from typing import NamedTuple

from hybridbus.adapters.config import Settings
from hybridbus.adapters.secrets import KafkaCredentials
from hybridbus.runtime.catalogfeed import CatalogFeed, from_files
from hybridbus.runtime.rulesigning import RuleCheck, Verifier
from hybridbus.runtime.rulestore import RuleFeed
from routing.catalog import Catalog


class Following(NamedTuple):
    catalogs: CatalogFeed
    catalog: Catalog  # in force at the start; the feed tells of later ones
    check: RuleCheck
    rules: RuleFeed


def follow(cfg: Settings, verifier: Verifier, creds: KafkaCredentials, component: str) -> Following:
    """The catalog feed loaded (the schema files when `_hbus.catalog` holds none) and the rule feed checking
    signatures and widenings against that catalog."""
    catalogs = CatalogFeed(creds, component, lambda: from_files(cfg))
    catalog = catalogs.load().catalog
    check = RuleCheck(verifier, component, catalog)
    return Following(catalogs, catalog, check, RuleFeed(creds, check))
