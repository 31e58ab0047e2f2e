#!/usr/bin/env bash
# Start PostgreSQL and RabbitMQ on 127.0.0.1 if they are stopped, and switch RabbitMQ's consumer
# timeout off (it kills AiiDA processes that run longer than 30 minutes). Idempotent.
set -u
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 5432 && command -v pg_ctlcluster >/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
if ! port_open 5672 && command -v rabbitmq-server >/dev/null; then
  rabbitmq-server -detached || true
  for _ in $(seq 30); do port_open 5672 && break; sleep 1; done
fi
if command -v rabbitmqctl >/dev/null && port_open 5672; then
  rabbitmqctl eval 'application:set_env(rabbit, consumer_timeout, undefined).' >/dev/null || true
fi
port_open 5432 && port_open 5672
