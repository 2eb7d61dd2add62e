"""Case numbers, PINs and the [cases] configuration (services/casecrypto.py, node/config.py)."""

from __future__ import annotations

import secrets
from dataclasses import replace
from pathlib import Path

import pytest
from hashfed.node.config import CasesConfig, load_config, write_config
from hashfed.node.errors import NodeError
from hashfed.node.services.casecrypto import (
    InvalidCase,
    check_pin,
    format_case_number,
    generate_pin,
    hash_pin,
    number_digest,
    parse_case_number,
    verify_pin,
)
from synchelpers import make_node


def test_case_numbers_round_trip_and_forgive_hand_copying() -> None:
    for _ in range(50):
        raw = secrets.token_bytes(16)
        number = format_case_number(raw)
        assert len(number) == len("HF-XXXX-XXXX-XXXX-XXXX-XXXX-XXXX-XX")
        assert parse_case_number(number) == raw
        assert parse_case_number(number.lower().replace("-", " ")) == raw
        assert parse_case_number(number[3:]) == raw
    raw = bytes.fromhex("0123456789abcdef0123456789abcdef")
    typed = format_case_number(raw).replace("0", "O").replace("1", "l")
    assert parse_case_number(typed) == raw
    assert number_digest(raw) != number_digest(bytes(16))


@pytest.mark.parametrize(
    "text",
    ["", "HF-", "HF-0000", "HF-" + "U" * 26, "HF-" + "Z" * 26, "HF-" + "0" * 27, "../../etc"],
)
def test_bad_case_numbers_are_refused(text: str) -> None:
    with pytest.raises(InvalidCase, match="not a case number"):
        parse_case_number(text)


@pytest.mark.parametrize(
    ("pin", "words"),
    [
        ("short", "at least 8"),
        ("x" * 65, "at most"),
        ("aaaaaaaa", "too easy"),
        ("12345678", "too easy"),
        ("87654321", "too easy"),
        ("abcdefgh", "too easy"),
        ("12121212", "pattern"),
        ("123123123", "pattern"),
        ("PassWord", "common"),
        (" padded-pin ", "space"),
        ("tab\there-pin", "control"),
    ],
)
def test_weak_pins_are_refused(pin: str, words: str) -> None:
    with pytest.raises(InvalidCase, match=words):
        check_pin(pin)


def test_good_and_generated_pins() -> None:
    assert check_pin("correct-horse-42") == "correct-horse-42"
    for _ in range(20):
        pin = generate_pin()
        assert pin.isdigit() and len(pin) == 10
        check_pin(pin)


def test_pins_are_stored_as_salted_scrypt_hashes() -> None:
    stored = hash_pin("correct-horse-42")
    name, n, r, p, salt, key = stored.split("$")
    assert (name, n, r, p) == ("scrypt", str(2**15), "8", "1")
    assert len(bytes.fromhex(salt)) == 16 and len(bytes.fromhex(key)) == 32
    assert "correct-horse-42" not in stored
    assert verify_pin("correct-horse-42", stored)
    assert not verify_pin("correct-horse-43", stored)
    assert hash_pin("correct-horse-42") != stored  # fresh salt


def test_cases_config_round_trips_and_is_validated(tmp_path: Path) -> None:
    node = make_node(tmp_path, "p", "publisher")
    assert load_config(node.config.home).cases == CasesConfig()
    assert CasesConfig().smtp_starttls is True  # the case number is not mailed in the clear
    assert (CasesConfig().min_batch_cases, CasesConfig().max_hold) == (5, 86400)
    cases = CasesConfig(
        review=True,
        batch_interval=600,
        time_granularity=900,
        min_batch_cases=3,
        max_hold=7200,
        smtp_host="mail.example",
        smtp_port=587,
        smtp_from="desk@example.org",
        smtp_starttls=False,
        client_ip_header="X-Forwarded-For",
    )
    write_config(replace(node.config, cases=cases))
    assert load_config(node.config.home).cases == cases
    toml = node.config.home / "hashfed.toml"
    for bad, words in (
        ("review = 1", "true or false"),
        ("time_granularity = 0", "time_granularity"),
        ("min_batch_cases = 0", "min_batch_cases"),
        ("max_hold = 1.5", "max_hold"),
        ('smtp_from = ""', "smtp_from"),
        ("secret = 1", "unknown setting"),
    ):
        text = toml.read_text()
        key = bad.split(" ")[0]
        lines = [line for line in text.splitlines() if not line.startswith(key + " ")]
        # Inside [cases], whichever section follows it.
        toml.write_text("\n".join(lines).replace("[cases]\n", "[cases]\n" + bad + "\n", 1))
        with pytest.raises(NodeError, match=words):
            load_config(node.config.home)
        toml.write_text(text)
    node.close()
