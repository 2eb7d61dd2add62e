"""Sending a case number once by email, over SMTP (``[cases] smtp_*``).

The address and the case number are used for this one message and then
forgotten: they are never stored, and never logged. Errors raised here carry
no address (smtplib's own exceptions can; they are replaced by
:class:`MailError` with a fixed message).
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
from email.message import EmailMessage

from hashfed.node.config import CasesConfig
from hashfed.node.errors import NodeError

log = logging.getLogger("hashfed.cases")

MAX_ADDRESS_LENGTH = 254

_ADDRESS = re.compile(r"[^@\s<>(),;:\"\[\]\\]{1,64}@[A-Za-z0-9.-]{1,252}\.[A-Za-z0-9-]{2,63}")


class MailError(NodeError):
    """The email could not be sent; the message says so without naming the address."""


def check_address(address: object) -> str:
    """Returns address if it looks like one mailbox (no name, no list), else raises ValueError."""
    if (
        not isinstance(address, str)
        or len(address) > MAX_ADDRESS_LENGTH
        or not _ADDRESS.fullmatch(address)
    ):
        raise ValueError("'email' must be one email address, like name@example.org")
    return address


def case_number_message(config: CasesConfig, to: str, number: str, origin: str) -> EmailMessage:
    """Returns the email that carries a case number (never the PIN)."""
    msg = EmailMessage()
    msg["From"] = config.smtp_from
    msg["To"] = to
    msg["Subject"] = "Your case number"
    msg.set_content(
        "You opened a case to have hashes of your images shared with partner platforms.\n"
        "\n"
        f"Your case number is:\n\n    {number}\n\n"
        "With it and your PIN you can check the case or withdraw it at any time.\n"
        "This email is the only copy: we do not keep your email address or the case\n"
        "number, and we cannot recover your PIN. Keep them both somewhere safe.\n"
        "\n"
        f"-- the case desk of {origin}\n"
    )
    return msg


def send_case_number(
    config: CasesConfig, to: str, number: str, origin: str, timeout: float = 20
) -> None:
    """Sends the case number to one address through the configured SMTP server.

    Blocking (run it in a thread from async code). Raises MailError, whose
    message names neither the address nor the number.
    """
    if not config.smtp_host:
        raise MailError("this case desk does not send email")
    msg = case_number_message(config, check_address(to), number, origin)
    try:
        with smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=timeout) as smtp:
            if config.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            else:
                log.warning(
                    "case desk: sending a case number without STARTTLS ([cases] "
                    "smtp_starttls = false): it crosses the network in the clear"
                )
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        raise MailError(f"the email could not be sent ({type(exc).__name__})") from None
