"""The production set-up: a PostgreSQL + RabbitMQ profile, an import into it, and a real daemon running a CalcJob."""

import pytest

from daemon_helpers import running_daemon, wait_until

pytestmark = [pytest.mark.services, pytest.mark.shared]


def test_import_and_daemon_on_postgres_rabbitmq(postgres_rabbitmq_profile, zro2_outcars, tmp_path):
    from aiida import orm
    from aiida.engine import submit
    from aiida.plugins import CalculationFactory

    from aiida_irspec.calculations.import_vasp import import_vasp_files
    from aiida_irspec.data.born_charges import BornChargesData

    profile = postgres_rabbitmq_profile
    assert profile.storage_backend == "core.psql_dos" and profile.process_control_backend == "core.rabbitmq"

    group = orm.Group(label="services").store()
    results = import_vasp_files(zro2_outcars[:3], group=group)
    assert [r.status for r in results] == ["imported"] * 3
    assert {node.pk for node in group.nodes} == {r.born_charges.pk for r in results}
    assert all(isinstance(node, BornChargesData) and node.sum_rule_max < 1e-3 for node in group.nodes)
    again = import_vasp_files(zro2_outcars[:3], group=group)
    assert [r.status for r in again] == ["already imported"] * 3 and group.count() == 3
    assert orm.QueryBuilder().append(orm.SinglefileData).count() == 3

    computer = orm.Computer(label="localhost-services", hostname="localhost", transport_type="core.local",
                            scheduler_type="core.direct", workdir=str(tmp_path / "work")).store()
    computer.configure()
    computer.set_minimum_job_poll_interval(0.5)
    code = orm.InstalledCode(computer=computer, filepath_executable="/bin/bash",
                             default_calc_job_plugin="core.arithmetic.add").store()

    with running_daemon(profile) as client:
        assert client.is_daemon_running
        node = submit(CalculationFactory("core.arithmetic.add"), code=code, x=orm.Int(2), y=orm.Int(3),
                      metadata={"options": {"resources": {"num_machines": 1, "num_mpiprocs_per_machine": 1}}})
        wait_until(lambda: node.is_terminated, 120)
        assert node.is_finished_ok, (node.process_state, node.exit_status, client.daemon_log_file)
        assert node.outputs.sum.value == 5
