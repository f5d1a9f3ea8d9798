"""Container support: the in-image entrypoint (weights at start, /input -> /output, selftest) and the host's
`medpipes docker run` command line."""

from medpipes.core.containers.docker_run import DockerRunPlan, docker_run_command, plan_docker_run

__all__ = ["DockerRunPlan", "docker_run_command", "plan_docker_run"]
