# A service run by raw_exec in Replica's sandbox: a prestart task makes its state subvolume (and
# the snapshot before each start) with replica-shift, then replica-run applies the profile
# /etc/replica/services/web.service.conf and runs the server. raw_exec mounts nothing itself;
# replica-run does what systemd's drop-in does on a systemd host.
job "web" {
  datacenters = ["dc1"]
  type        = "service"

  group "web" {
    count = 1

    network {
      port "http" {}
    }

    # The state lives on this client's store: keep the allocation here.
    ephemeral_disk {
      sticky = true
    }

    task "prepare" {
      driver = "raw_exec"

      lifecycle {
        hook    = "prestart"
        sidecar = false
      }

      config {
        command = "/usr/bin/replica-shift"
        args    = ["prepare", "--wait", "30", "web"]
      }
    }

    task "web" {
      driver      = "raw_exec"
      kill_signal = "SIGTERM"

      config {
        command = "/usr/bin/replica-run"
        args = ["web", "--", "/usr/bin/python3", "-m", "http.server", "${NOMAD_PORT_http}",
                "--bind", "127.0.0.1", "--directory", "/var/lib/web"]
      }

      service {
        name     = "web"
        port     = "http"
        provider = "nomad"
      }
    }
  }
}
