# ioproxy on a Nomad client: public ingress on ports 80 and 443, the calling
# port 7000 and the admin listener on the node's private address, state in a
# host volume. See deploy/README.md for the client configuration it expects.
#
# Run it from the repository root (file() below reads paths relative to the
# directory the nomad command runs in):
#   nomad job run -var image=registry.example.com/ioproxy:0.1.0 deploy/nomad/ioproxy.nomad.hcl

variable "image" {
  type        = string
  description = "The ioproxy image, built from deploy/docker/ioproxy.Dockerfile."
  default     = "ghcr.io/ioproxy/ioproxy:latest"
}

variable "config_file" {
  type        = string
  description = "The ioproxy configuration rendered into the task, relative to the directory nomad runs in."
  default     = "deploy/ioproxy.hcl"
}

variable "acme_email" {
  type    = string
  default = "ops@example.com"
}

job "ioproxy" {
  type        = "service"
  datacenters = ["*"]

  group "ioproxy" {
    count = 1

    # Ports are reserved on the node so that nothing else is placed on them;
    # the task itself uses the host's network (see network_mode below).
    network {
      port "http" {
        static = 80
      }
      port "https" {
        static = 443
      }
      port "calling" {
        static = 7000
      }
      port "admin" {
        static = 9901
      }
    }

    volume "data" {
      type      = "host"
      source    = "ioproxy-data"
      read_only = false
    }

    service {
      name     = "ioproxy"
      provider = "nomad"
      port     = "admin"

      check {
        name     = "ready"
        type     = "http"
        path     = "/readyz"
        interval = "10s"
        timeout  = "3s"
      }
    }

    # Registered so that apps on other nodes can find the calling port with
    # a nomadService template; on one node, ATPROTO_PROXY can simply name
    # the node's address (see statusphere.nomad.hcl).
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
        # Host networking: ioproxy sees real client addresses (no NAT in
        # front of 80/443), and binds its calling port and admin listener
        # to the node's private address itself.
        network_mode = "host"
        # The template below, mounted where the image's default command
        # reads its configuration.
        volumes = ["local/ioproxy:/etc/ioproxy:ro"]
      }

      # Exposes the task's workload identity as NOMAD_TOKEN. Its implicit
      # policy may list and read Nomad service registrations, which is all
      # that resolving backend = "nomad:statusphere" needs.
      identity {
        env         = true
        change_mode = "restart"
      }

      env {
        NOMAD_ADDR           = "http://${attr.unique.network.ip-address}:4646"
        IOPROXY_CALL_BIND    = "${NOMAD_IP_calling}"
        IOPROXY_ADMIN_LISTEN = "${NOMAD_ADDR_admin}"
        ACME_EMAIL           = var.acme_email
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

      volume_mount {
        volume      = "data"
        destination = "/data"
      }

      resources {
        cpu    = 300
        memory = 256
      }
    }
  }
}
