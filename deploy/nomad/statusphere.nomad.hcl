# The Statusphere app behind ioproxy. ioproxy finds it as backend =
# "nomad:statusphere" through the service registered below, and the app
# writes to users' PDSs through ioproxy's calling port (ATPROTO_PROXY).
#
#   nomad job run -var image=registry.example.com/statusphere:0.1.0 deploy/nomad/statusphere.nomad.hcl

variable "image" {
  type        = string
  description = "The Statusphere image, built from deploy/docker/statusphere.Dockerfile."
  default     = "ghcr.io/ioproxy/statusphere:latest"
}

variable "jetstream_url" {
  type    = string
  default = "wss://jetstream2.us-east.bsky.network/subscribe"
}

job "statusphere" {
  type        = "service"
  datacenters = ["*"]

  group "statusphere" {
    # One instance: the SQLite file in the host volume has one writer.
    count = 1

    network {
      port "http" {
        to = 3000
      }
    }

    volume "data" {
      type      = "host"
      source    = "statusphere-data"
      read_only = false
    }

    service {
      name     = "statusphere"
      provider = "nomad"
      port     = "http"

      # ioproxy sends traffic only to instances whose checks pass;
      # /healthz also pings the app's SQLite database.
      check {
        type     = "http"
        path     = "/healthz"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "statusphere" {
      driver = "docker"

      config {
        image = var.image
        ports = ["http"]
      }

      env {
        PORT           = "3000"
        STATUSPHERE_DB = "/data/statusphere.sqlite"
        JETSTREAM_URL  = var.jetstream_url
        # ioproxy's calling port (call "atproto", port 7000 in
        # deploy/ioproxy.hcl). ioproxy binds it to this node's private
        # address (attr.unique.network.ip-address: the address of the
        # interface named by network_interface in the client config), and
        # this container reaches that address through Docker's bridge.
        # 127.0.0.1 would be the container itself, not the node.
        ATPROTO_PROXY = "http://${attr.unique.network.ip-address}:7000"
      }

      volume_mount {
        volume      = "data"
        destination = "/data"
      }

      resources {
        cpu    = 200
        memory = 128
      }
    }
  }
}
