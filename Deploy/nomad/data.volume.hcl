# A dynamic host volume made by replica-volume (install it as PLUGIN_DIR/replica-volume on each
# client): the subvolume nomad/default/data of the store, limited to capacity_max by a btrfs
# qgroup (quotas must be on: btrfs quota enable /run/replica/store), snapshotted when deleted.
#   nomad volume create data.volume.hcl
namespace = "default"
name      = "data"
type      = "host"
plugin_id = "replica-volume"

capacity_min = "100MiB"
capacity_max = "1GiB"

capability {
  access_mode     = "single-node-single-writer"
  attachment_mode = "file-system"
}

parameters {
  store              = "/run/replica/store"
  snapshot_on_delete = "true"
}
