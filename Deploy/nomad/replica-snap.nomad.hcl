# replica-snap on every client, every hour at minute 0 (UTC): snapshots the state of the listed
# services and prunes each by its profile's [Snapshots] policy, like replica-snap@.timer. A run
# still going when the next is due is skipped (prohibit_overlap); exit code 3 (another run holds
# a subvolume's lock) is not a failure worth retrying.
job "replica-snap" {
  datacenters = ["dc1"]
  type        = "sysbatch"

  periodic {
    crons            = ["0 * * * *"]
    prohibit_overlap = true
    time_zone        = "UTC"
  }

  group "snapshots" {
    restart {
      attempts = 0
    }

    task "run" {
      driver = "raw_exec"

      config {
        command = "/usr/bin/replica-snap"
        args    = ["run", "--wait", "300", "web"]
      }
    }
  }
}
