"""Packaging for the treasury payment data exchange gateway (财政银行业务数据交换平台)."""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="treasury-gateway",
    version="0.1.0",
    description="Finance-bank data exchange gateway: signed XML over mutual TLS, treasury payments, "
    "official-card repayments and nightly reconciliation",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11,<3.12",
    packages=[
        *find_packages(include=["gateway*", "protocols*", "banks*", "reconciliation*", "certs*", "simulators*"]),
        "gateway.store.migrations",
        "gateway.store.migrations.versions",
    ],
    package_data={
        "protocols": ["schemas/*.xsd"],
        "banks": ["declarations/*.toml"],
        "gateway.store": ["migrations/*.py", "migrations/*.mako", "migrations/versions/*.py"],
        "simulators": ["*.toml"],
        "gateway.dashboard": ["static/*"],
    },
    include_package_data=True,
    install_requires=[
        "Twisted>=24.3",
        "pyOpenSSL>=24.0",
        "service-identity>=24.1",
        "cryptography>=42",
        "lxml>=5.2",
        "SQLAlchemy>=2.0,<2.2",
        "alembic>=1.13",
        "rich>=13",
        "prometheus-client>=0.20",  # /metrics: the exposition format and histograms (gateway/metrics.py)
    ],
    extras_require={
        "postgresql": ["psycopg[binary]>=3.1"],
        "test": [
            "pytest>=8",
            "pytest-cov>=5",
            "hypothesis>=6.100",
            "signxml>=4.0",
            "psycopg[binary]>=3.1",
            "selenium>=4.20",  # dashboard browser tests, driving Debian's chromium through chromedriver
            "pandas>=2",  # the reconciliation benchmark's reference, exercised by its test
        ],
        # the reference implementation the reconciliation benchmark compares against (tgw bench reconcile)
        "bench": ["pandas>=2"],
        "dev": [
            "ruff>=0.6",
            "mypy>=1.10",
            "lxml-stubs>=0.5",
            "mypy-zope>=1.0",
            "types-pyOpenSSL",
        ],
    },
    entry_points={"console_scripts": ["tgw = gateway.cli:main"]},
)
