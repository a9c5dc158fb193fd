"""Field validators shared by every domain record.

Each validator takes the field's name so the error it raises says exactly which
field was bad and why; the API and CLI show that message to the user verbatim.
The syntax rules are Kubernetes' (apimachinery `validation.go`), because clusters,
namespaces and services are named by Kubernetes users first.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from federation.errors import ValidationError

# RFC 1123 label, as Kubernetes uses it for namespaces (IsDNS1123Label): max 63 chars.
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# RFC 1035 label, as Kubernetes uses it for Service names (IsDNS1035Label).
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# Kubernetes label value syntax (IsValidLabelValue), used for regions and zones.
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
# Kubernetes qualified label key: optional DNS-1123 subdomain prefix + "/" + name.
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
# SPIFFE trust domain name charset (SPIFFE-ID spec section 2.1).
_TRUST_DOMAIN = re.compile(r"^[a-z0-9._-]+$")

MAX_LABEL = 63  # RFC 1035 section 2.3.4: labels are 63 octets or less
MAX_DNS_NAME = 253  # RFC 1035 section 2.3.4 (255 octets on the wire = 253 characters)
MAX_PORT = 65535


def dns1123_label(field: str, value: object) -> str:
    """An RFC 1123 label (cluster and namespace names)."""
    text = _string(field, value)
    if len(text) > MAX_LABEL:
        raise ValidationError(field, f"{text!r} is longer than {MAX_LABEL} characters")
    if not _DNS1123_LABEL.fullmatch(text):
        raise ValidationError(
            field,
            f"{text!r} is not an RFC 1123 label (lowercase letters, digits and '-', "
            "starting and ending with a letter or digit)",
        )
    return text


def dns1035_label(field: str, value: object) -> str:
    """An RFC 1035 label (Kubernetes Service names must start with a letter)."""
    text = dns1123_label(field, value)
    if not _DNS1035_LABEL.fullmatch(text):
        raise ValidationError(field, f"{text!r} must start with a lowercase letter")
    return text


def dns_subdomain(field: str, value: object) -> str:
    """An RFC 1123 DNS name: dot-separated labels, at most 253 characters."""
    text = _string(field, value)
    if len(text) > MAX_DNS_NAME:
        raise ValidationError(field, f"{text!r} is longer than {MAX_DNS_NAME} characters")
    for label in text.split("."):
        if len(label) > MAX_LABEL or not _DNS1123_LABEL.fullmatch(label):
            raise ValidationError(field, f"{text!r} is not a valid DNS name")
    return text


def label_value(field: str, value: object) -> str:
    """A non-empty Kubernetes label value (regions, zones, networks)."""
    text = _string(field, value)
    if len(text) > MAX_LABEL:
        raise ValidationError(field, f"{text!r} is longer than {MAX_LABEL} characters")
    if not _LABEL_VALUE.fullmatch(text):
        raise ValidationError(
            field, f"{text!r} is not a valid label value (letters, digits, '-', '_', '.')"
        )
    return text


def labels(field: str, value: object) -> dict[str, str]:
    """A Kubernetes-style label map: qualified keys, label-value values (may be empty)."""
    if not isinstance(value, Mapping):
        raise ValidationError(field, f"must be a mapping of strings, got {type(value).__name__}")
    out: dict[str, str] = {}
    for key, val in value.items():
        _label_key(f"{field}[{key!r}]", key)
        text = _string(f"{field}[{key!r}]", val, allow_empty=True)
        if text:
            label_value(f"{field}[{key!r}]", text)
        out[key] = text
    return dict(sorted(out.items()))


def _label_key(field: str, key: object) -> None:
    text = _string(field, key)
    prefix, _, name = text.rpartition("/")
    if prefix:
        dns_subdomain(field, prefix)
    if len(name) > MAX_LABEL or not _LABEL_NAME.fullmatch(name):
        raise ValidationError(field, f"{text!r} is not a valid label key")


def port(field: str, value: object) -> int:
    """A TCP/UDP port number, 1-65535."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, f"must be an integer port, got {value!r}")
    if not 1 <= value <= MAX_PORT:
        raise ValidationError(field, f"{value} is outside 1-{MAX_PORT}")
    return value


def address(field: str, value: object) -> str:
    """An IPv4 or IPv6 address, or a DNS name; returned in canonical form."""
    text = _string(field, value)
    if "%" in text:  # an IPv6 zone (RFC 4007) names a local interface: meaningless elsewhere
        raise ValidationError(field, f"{text!r}: scoped addresses (with %zone) are not routable")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    try:
        name = dns_subdomain(field, text.lower())
        if name.rsplit(".", 1)[-1].isdigit():  # RFC 3696 section 2: no all-numeric TLD
            raise ValidationError(field, "looks like a malformed IP address")
        return name
    except ValidationError:
        raise ValidationError(
            field, f"{text!r} is neither an IPv4/IPv6 address nor a DNS name"
        ) from None


def host_port(field: str, value: object) -> str:
    """`host:port` or `[v6]:port`, as gateways are addressed; returned canonical."""
    text = _string(field, value)
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValidationError(field, f"{text!r} is not [ipv6]:port")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValidationError(field, f"{host!r} in {text!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValidationError(field, f"{text!r} is not host:port")
        if ":" in host:
            raise ValidationError(field, f"{text!r}: write IPv6 addresses as [addr]:port")
    if not (port_text.isascii() and port_text.isdigit() and len(port_text) <= len(str(MAX_PORT))):
        raise ValidationError(field, f"port {port_text!r} in {text!r} is not a number")
    number = port(field, int(port_text))
    canonical = address(field, host)
    shown = f"[{canonical}]" if ":" in canonical else canonical
    return f"{shown}:{number}"


def trust_domain(field: str, value: object) -> str:
    """A SPIFFE trust domain name (SPIFFE-ID spec 2.1): lowercase, digits, '.', '-', '_'."""
    text = _string(field, value)
    if len(text) > MAX_DNS_NAME or not _TRUST_DOMAIN.fullmatch(text):
        raise ValidationError(
            field, f"{text!r} is not a SPIFFE trust domain (lowercase a-z, 0-9, '.', '-', '_')"
        )
    return text


def choice(field: str, value: object, allowed: tuple[str, ...]) -> str:
    """One of a fixed set of strings."""
    text = _string(field, value)
    if text not in allowed:
        raise ValidationError(field, f"{text!r} is not one of {', '.join(allowed)}")
    return text


def _string(field: str, value: object, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    if not value and not allow_empty:
        raise ValidationError(field, "must not be empty")
    return value
