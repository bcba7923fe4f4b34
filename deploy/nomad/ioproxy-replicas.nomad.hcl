# ioproxy as three replicas on three Nomad clients, sharing sessions through
# Redis, behind a load balancer that holds the TLS certificate. This is the
# same job as ioproxy.nomad.hcl ("ioproxy"), so running it replaces the
# single instance; run one file or the other. See "Several replicas" in
# deploy/README.md for the Nomad variable it reads, the load balancer and
# what happens when Redis is down.
#
# Run it from the repository root (file() below reads paths relative to the
# directory the nomad command runs in):
#   nomad var put nomad/jobs/ioproxy session_key="$(openssl rand -base64 32)"
#   nomad job run -var image=registry.example.com/ioproxy:0.1.0 \
#     -var trusted_proxies=10.110.0.0/20 deploy/nomad/ioproxy-replicas.nomad.hcl

variable "image" {
  type        = string
  description = "The ioproxy image, built from deploy/docker/ioproxy.Dockerfile."
  default     = "ghcr.io/ioproxy/ioproxy:latest"
}

variable "config_file" {
  type        = string
  description = "The ioproxy configuration rendered into the task, relative to the directory nomad runs in."
  default     = "deploy/ioproxy-replicas.hcl"
}

# No default: trusting a range that is too wide lets anyone in it choose the
# client address and scheme ioproxy believes.
variable "trusted_proxies" {
  type        = string
  description = "The private address range (CIDR) the load balancer connects from, such as the VPC's range; ioproxy believes its X-Forwarded-For and X-Forwarded-Proto."
}

job "ioproxy" {
  type        = "service"
  datacenters = ["*"]

  group "ioproxy" {
    count = 3

    # One replica per node: the ports below are static, and a node that
    # goes down takes one replica with it, not two.
    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    # Replace one replica at a time, and go on only once the new one's
    # readiness check passes (its listeners are up and Redis answers).
    # A deployment whose replica never gets ready is rolled back to the
    # last job version that did.
    update {
      max_parallel      = 1
      health_check      = "checks"
      min_healthy_time  = "10s"
      healthy_deadline  = "3m"
      progress_deadline = "10m"
      auto_revert       = true
    }

    # Ports are reserved on the node so that nothing else is placed on them;
    # the task itself uses the host's network (see network_mode below).
    # No 443: TLS ends at the load balancer.
    network {
      port "http" {
        static = 80
      }
      port "calling" {
        static = 7000
      }
      port "admin" {
        static = 9901
      }
    }

    service {
      name     = "ioproxy"
      provider = "nomad"
      port     = "admin"

      # /readyz is 503 while Redis does not answer. The check gates
      # deployments (update.health_check); it does not restart the task,
      # because a replica reconnects to Redis by itself.
      check {
        name     = "ready"
        type     = "http"
        path     = "/readyz"
        interval = "10s"
        timeout  = "3s"
      }
    }

    # Any replica serves any session, so an app finds a calling port with
    # a nomadService template (see deploy/README.md).
    service {
      name     = "ioproxy-calling"
      provider = "nomad"
      port     = "calling"
    }

    restart {
      attempts = 3
      interval = "5m"
      delay    = "10s"
      mode     = "delay"
    }

    task "ioproxy" {
      driver = "docker"

      config {
        image = var.image
        # Host networking, as in ioproxy.nomad.hcl: ioproxy binds the
        # calling port and admin listener to the node's private address.
        network_mode = "host"
        volumes      = ["local/ioproxy:/etc/ioproxy:ro"]
      }

      # NOMAD_TOKEN for backend = "nomad:statusphere". The same workload
      # identity lets the templates below read the service "redis" and the
      # variable nomad/jobs/ioproxy (a job may read the variables under
      # nomad/jobs/<its name> without any policy).
      identity {
        env         = true
        change_mode = "restart"
      }

      env {
        NOMAD_ADDR              = "http://${attr.unique.network.ip-address}:4646"
        IOPROXY_CALL_BIND       = "${NOMAD_IP_calling}"
        IOPROXY_ADMIN_LISTEN    = "${NOMAD_ADDR_admin}"
        IOPROXY_TRUSTED_PROXIES = var.trusted_proxies
      }

      # The Redis server, found through Nomad's service discovery, read
      # when the task starts. noop: while Redis restarts, its registration
      # goes away and this file renders an empty url; restarting every
      # replica then would make them all fail to start and drop the
      # sessions they have cached, where a running replica simply
      # reconnects once Redis is back at its address (a static port on the
      # node of its host volume). Should Redis really move, run
      # `nomad job restart ioproxy`. For a managed Redis, replace the data
      # with its URL, such as
      # IOPROXY_REDIS_URL=rediss://default:PASSWORD@redis.example.com:6380/0
      # (better: keep that URL in the Nomad variable too).
      template {
        destination = "local/redis.env"
        env         = true
        change_mode = "noop"
        data        = <<-EOT
          IOPROXY_REDIS_URL={{ range nomadService "redis" }}redis://{{ .Address }}:{{ .Port }}/0{{ end }}
        EOT
      }

      # The key that seals every record in Redis: the same on every
      # replica. secrets/ is not readable from other tasks' directories.
      # noop: a new key reaches the replicas through a rolling update (the
      # rotation in deploy/README.md), never all of them at once.
      template {
        destination = "secrets/session.env"
        env         = true
        change_mode = "noop"
        data        = <<-EOT
          {{ with nomadVar "nomad/jobs/ioproxy" }}IOPROXY_SESSION_KEY={{ .session_key }}{{ end }}
        EOT
      }

      template {
        data        = file(var.config_file)
        destination = "local/ioproxy/io.hcl"
        change_mode = "restart"
        # ioproxy's config has no Go template actions; these delimiters
        # make sure a stray "{{" in it is never taken for one.
        left_delimiter  = "[[["
        right_delimiter = "]]]"
      }

      resources {
        cpu    = 300
        memory = 256
      }
    }
  }
}
