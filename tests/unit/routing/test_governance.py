"""Four-eyes policy on rule sets: what a signature covers and which records are refused before any key is used."""
from __future__ import annotations

from routing import governance as G

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


def test_a_close_is_always_followed_a_reopening_only_signed_and_newer() -> None:
    assert G.boundary_follows(None, G.CLOSED, 1, signature_valid=False)  # fail closed: no signature needed
    assert G.boundary_follows(5, G.CLOSED, 1, signature_valid=False)
    assert G.boundary_follows(5, G.OPEN, 6, signature_valid=True)
    assert not G.boundary_follows(5, G.OPEN, 6, signature_valid=False)
    assert not G.boundary_follows(5, G.OPEN, 5, signature_valid=True)  # a replayed older reopening
    assert not G.boundary_follows(5, "ajar", 6, signature_valid=True)


def test_the_boundary_statement_binds_state_reason_time_and_signer() -> None:
    base = G.boundary_statement(G.OPEN, "ok", 1, "wang.fang")
    assert base not in {G.boundary_statement(G.CLOSED, "ok", 1, "wang.fang"),
                        G.boundary_statement(G.OPEN, "other", 1, "wang.fang"),
                        G.boundary_statement(G.OPEN, "ok", 2, "wang.fang"),
                        G.boundary_statement(G.OPEN, "ok", 1, "li.wei")}
