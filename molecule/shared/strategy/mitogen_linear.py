# Mitogen's mitogen_linear strategy, found through the installed
# ansible_mitogen package (requirements.txt) wherever the venv lives:
# ANSIBLE_STRATEGY_PLUGINS=<repo>/molecule/shared/strategy
# ANSIBLE_STRATEGY=mitogen_linear. Used by the full-stack scenario and by
# scripts/env.sh (WEBFARM_MITOGEN=1). Mitogen only takes over connections
# named by their short name (ansible_connection: docker).
import ansible_mitogen.loaders
import ansible_mitogen.strategy

# Controller-side tasks (connection local: molecule's create/destroy, the lab
# PKI) stay with Ansible's own local connection: under mitogen_local, the
# docker driver's async create/destroy jobs are never reported finished.
ansible_mitogen.strategy.REDIRECTED_CONNECTION_PLUGINS = tuple(
    c for c in ansible_mitogen.strategy.REDIRECTED_CONNECTION_PLUGINS if c != "local")

Base = ansible_mitogen.loaders.strategy_loader.get("linear", class_only=True)


class StrategyModule(ansible_mitogen.strategy.StrategyMixin, Base):
    pass
