# A single Redis server for ioproxy's shared session store, so that the
# replicas example (ioproxy-replicas.nomad.hcl) is complete on its own.
# ioproxy finds it as the Nomad service "redis".
#
# For production use a managed or replicated Redis instead (one that keeps
# its data across a failover, with TLS and a password: rediss://...). This
# one is a single process on one node: while it is down or being moved,
# new sign-ins fail (see "Several replicas" in deploy/README.md).
#
#   nomad job run deploy/nomad/redis.nomad.hcl

variable "image" {
  type    = string
  default = "redis:7"
}

job "redis" {
  type        = "service"
  datacenters = ["*"]

  group "redis" {
    # One server: its append-only file in the host volume has one writer.
    count = 1

    # A static port: with the host volume pinning Redis to its node, its
    # address stays the same across restarts, and ioproxy reconnects to it
    # without being restarted.
    network {
      port "redis" {
        static = 6379
        to     = 6379
      }
    }

    # The append-only file lives here, so a restart of Redis (or of its
    # node) loses no session. Create the directory and the host volume
    # "redis-data" on one client (deploy/README.md); Redis is placed there.
    volume "data" {
      type      = "host"
      source    = "redis-data"
      read_only = false
    }

    service {
      name     = "redis"
      provider = "nomad"
      port     = "redis"

      check {
        type     = "tcp"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "redis" {
      driver = "docker"

      config {
        image = var.image
        ports = ["redis"]
        args = [
          # Every write goes to the append-only file, flushed to disk each
          # second (and in full when Redis stops), so a restart loses
          # nothing and a crash at most the last second.
          "--appendonly", "yes",
          "--appendfsync", "everysec",
          # Never drop keys to make room: an evicted key is a user signed
          # out. When memory runs out, writes fail (ioproxy answers 503)
          # instead.
          "--maxmemory-policy", "noeviction",
        ]
      }

      volume_mount {
        volume      = "data"
        destination = "/data"
      }

      # Time to finish writing the append-only file on a stop.
      kill_timeout = "30s"

      resources {
        cpu    = 200
        memory = 256
      }
    }
  }
}
