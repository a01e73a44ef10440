"""Four-eyes policy on rule sets: what a signature covers and which records are refused before any key is used."""
from __future__ import annotations

from routing import governance as G
from routing.rules import RuleSet

P, A = G.PROPOSER, G.APPROVER


def refusal(claimed: str = "d", content: str = "d", at: int = 2, in_force: int | None = 1,
            signatures: tuple[tuple[str, str], ...] = ((P, "li.wei"),)) -> str | None:
    return G.structural_refusal(claimed, content, at, in_force, signatures)


def test_a_set_signed_by_its_proposer_over_its_own_digest_passes() -> None:
    assert refusal() is None
    assert refusal(signatures=((P, "li.wei"), (A, "zhang.min"))) is None


def test_each_broken_property_has_its_own_reason() -> None:
    assert refusal(signatures=()) == G.UNSIGNED
    assert refusal(signatures=((A, "zhang.min"),)) == G.UNSIGNED  # an approval alone puts nothing in force
    assert refusal(claimed="other") == G.DIGEST_MISMATCH
    assert refusal(signatures=((P, "li.wei"), ("operator", "x"))) == G.WRONG_ROLE
    assert refusal(at=1, in_force=1) == G.STALE
    assert refusal(at=5, in_force=None) is None  # nothing in force yet: nothing to be older than
    assert refusal(signatures=((P, "li.wei"), (A, "li.wei"))) == G.SAME_PERSON


def test_statements_bind_slot_time_signer_and_digest() -> None:
    base = G.apply_statement("live", "d", 1, "li.wei")
    assert base == G.apply_statement("live", "d", 1, "li.wei")
    others = {G.apply_statement("shadow", "d", 1, "li.wei"), G.apply_statement("live", "e", 1, "li.wei"),
              G.apply_statement("live", "d", 2, "li.wei"), G.apply_statement("live", "d", 1, "zhang.min"),
              G.approval_statement("d", "li.wei")}
    assert base not in others and len(others) == 5


def test_a_close_is_always_followed_a_reopening_only_signed_newer_and_by_a_second_person() -> None:
    assert G.boundary_follows(None, "", G.CLOSED, 1, "x", signature_valid=False)  # fail closed: no signature needed
    assert G.boundary_follows(5, "wang.fang", G.CLOSED, 1, "x", signature_valid=False)
    assert G.boundary_follows(5, "wang.fang", G.OPEN, 6, "zhao.lei", signature_valid=True)
    assert not G.boundary_follows(5, "wang.fang", G.OPEN, 6, "wang.fang", signature_valid=True)  # four eyes
    assert not G.boundary_follows(5, "wang.fang", G.OPEN, 6, "zhao.lei", signature_valid=False)
    assert not G.boundary_follows(5, "wang.fang", G.OPEN, 5, "zhao.lei", signature_valid=True)  # a replay
    assert not G.boundary_follows(5, "wang.fang", "ajar", 6, "zhao.lei", signature_valid=True)
    assert G.boundary_follows(None, "", G.OPEN, 6, "wang.fang", signature_valid=True)  # was not closed


def test_the_boundary_statement_binds_state_reason_time_and_signer() -> None:
    base = G.boundary_statement(G.OPEN, "ok", 1, "wang.fang")
    assert base not in {G.boundary_statement(G.CLOSED, "ok", 1, "wang.fang"),
                        G.boundary_statement(G.OPEN, "other", 1, "wang.fang"),
                        G.boundary_statement(G.OPEN, "ok", 2, "wang.fang"),
                        G.boundary_statement(G.OPEN, "ok", 1, "li.wei")}


# --- widening or narrowing: what needs a second person ------------------------------------------------------

def _edited(tmp_path, file: str, old: str, new: str):  # type: ignore[no-untyped-def]
    import shutil

    from hybridbus.adapters.loaders import load_ruleset_dir

    target = tmp_path / "rules"
    shutil.copytree(RULES_DIR, target, ignore=shutil.ignore_patterns("tests"))
    path = target / file
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return load_ruleset_dir(target)


from pathlib import Path  # noqa: E402

RULES_DIR = Path(__file__).resolve().parents[3] / "routing" / "rules"


def _shipped_and_catalog():  # type: ignore[no-untyped-def]
    from hybridbus.adapters.loaders import load_catalog, load_ruleset_dir

    return load_ruleset_dir(RULES_DIR), list(load_catalog())


def test_the_same_set_moves_nothing_and_needs_no_approval() -> None:
    shipped, types = _shipped_and_catalog()
    assert G.changes(shipped, shipped, types) == [] and not G.widens(shipped, shipped, types)


def test_taking_a_destination_away_is_a_narrowing_and_giving_it_back_a_widening(tmp_path) -> None:  # type: ignore[no-untyped-def]
    shipped, types = _shipped_and_catalog()
    narrower = _edited(tmp_path, "transport.yaml", "to: [public_cloud, archive]", "to: [archive]")
    found = G.changes(shipped, narrower, types)
    assert [c.event_type for c in found] == ["transport.bus_arrival v1", "transport.bus_arrival v2"]
    assert all(c.added == () and c.removed == ("public_cloud:public.transport.bus_arrival",) for c in found)
    assert not G.widens(shipped, narrower, types)
    assert G.widens(narrower, shipped, types)


def test_a_first_set_and_a_new_view_widen(tmp_path) -> None:  # type: ignore[no-untyped-def]
    shipped, types = _shipped_and_catalog()
    assert G.widens(RuleSet.empty(), shipped, types)
    without_view = _edited(tmp_path, "govservice.yaml", "        to: [public_cloud, archive]\n\n", "        to: []\n\n")
    assert G.widens(without_view, shipped, types) and not G.widens(shipped, without_view, types)


def test_reshaping_a_view_needs_approval_even_when_nothing_new_is_reached(tmp_path) -> None:  # type: ignore[no-untyped-def]
    shipped, types = _shipped_and_catalog()
    reshaped = _edited(tmp_path, "govservice.yaml", "          district: keep\n", "          district: {generalise: district}\n")
    [change] = G.changes(shipped, reshaped, types)
    assert change.added == () and change.removed == () and change.views_changed == ("permit_application_stats",)
    assert G.widens(shipped, reshaped, types)


# --- quarantine review ----------------------------------------------------------------------------------------

def test_a_quarantined_record_is_released_only_public_now_and_after_a_change() -> None:
    # Public now, judged under another catalog then: the catalog changed since.
    assert G.release_refusal(True, 100, ["old"], "new", None) is None
    # Public now, the live rules applied after it was quarantined.
    assert G.release_refusal(True, 100, ["same"], "same", 101) is None
    # Still not public: whatever changed.
    assert G.release_refusal(False, 100, ["old"], "new", 101) == G.STILL_NOT_PUBLIC
    # Public now, but nothing changed: rules older, catalog the same (or not stamped: fail closed).
    assert G.release_refusal(True, 100, ["same"], "same", 100) == G.NO_CHANGE_SINCE
    assert G.release_refusal(True, 100, [""], "new", None) == G.NO_CHANGE_SINCE
    assert G.release_refusal(True, 100, [], "new", 99) == G.NO_CHANGE_SINCE
    # One guard's copy judged under today's catalog already: the catalog did not change for that copy.
    assert G.release_refusal(True, 100, ["old", "new"], "new", None) == G.NO_CHANGE_SINCE


def test_a_release_takes_a_second_person_whose_proposal_vault_confirms() -> None:
    assert G.approval_refusal("wang.fang", "zhang.min", True, False) is None
    assert G.approval_refusal("wang.fang", "wang.fang", True, False) == G.SAME_PERSON
    assert G.approval_refusal("", "zhang.min", True, False) == G.NOT_PROPOSED
    assert G.approval_refusal("wang.fang", "zhang.min", False, False) == G.BAD_SIGNATURE
    assert G.approval_refusal("wang.fang", "zhang.min", True, True) == G.ALREADY_RELEASED


def test_release_statements_bind_the_record_the_act_and_the_person() -> None:
    base = G.release_statement("d", "e1", 1, "wang.fang")
    others = {G.release_statement("x", "e1", 1, "wang.fang"), G.release_statement("d", "e2", 1, "wang.fang"),
              G.release_statement("d", "e1", 2, "wang.fang"), G.release_statement("d", "e1", 1, "zhao.lei"),
              G.release_approval_statement("d", "e1", "wang.fang"), G.boundary_statement("open", "", 1, "wang.fang")}
    assert base not in others and len(others) == 6
