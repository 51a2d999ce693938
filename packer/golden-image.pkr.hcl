# A golden image (hpc-base, cloud-base, ...): boots the mmdebstrap base disk under qemu (TCG) and applies
# the collection's image_common role with Ansible. Each image's own values are in packer/<image>.pkrvars.hcl.
# Run through images/build.sh, which builds the base disk, the NoCloud seed and the SSH key, then
# flattens and caches the output:
#   images/build.sh hpc-base [--base-image OTHER.qcow2]
# Direct use: packer build -var-file=packer/hpc-base.pkrvars.hcl -var base_image=... -var seed_dir=...
#   -var ssh_private_key_file=... -var output_dir=... -var collections_path=... packer/golden-image.pkr.hcl

variable "image_name" {
  type = string
}

variable "image_version" {
  type    = string
  default = "dev"
}

# A qcow2 to start from: the mmdebstrap base disk, or another image (cluster.yaml images.<kind>.base_image).
variable "base_image" {
  type = string
}

# Directory holding the NoCloud seed (user-data, meta-data) that authorises ssh_private_key_file for root.
variable "seed_dir" {
  type = string
}

variable "ssh_private_key_file" {
  type = string
}

variable "output_dir" {
  type = string
}

# ANSIBLE_COLLECTIONS_PATH under which aihow.hyperscaler is found.
variable "collections_path" {
  type = string
}

# Where provision.yml writes the guest's `dpkg-query -W` list for the image metadata.
variable "packages_out" {
  type    = string
  default = ""
}

# JSON file of extra variables for provision.yml (e.g. image_common_disabled_services).
variable "extra_vars_file" {
  type    = string
  default = ""
}

variable "memory" {
  type    = number
  default = 2048
}

variable "cpus" {
  type    = number
  default = 2
}

source "qemu" "image" {
  disk_image       = true
  iso_url          = var.base_image
  iso_checksum     = "none"
  # Packer copies base_image into output_dir and boots the copy, so the base is never written to.
  # (use_backing_file = true fails with qemu >= 7: packer 1.6.6 omits the backing format, -F.)
  use_backing_file = false
  skip_resize_disk = true
  skip_compaction  = true
  format           = "qcow2"
  disk_interface   = "virtio"
  net_device       = "virtio-net"
  # No usable KVM on the build hosts: plain TCG.
  accelerator      = "tcg"
  cpus             = var.cpus
  memory           = var.memory
  headless         = true
  vnc_bind_address = "127.0.0.1"
  cd_files         = ["${var.seed_dir}/user-data", "${var.seed_dir}/meta-data"]
  cd_label         = "cidata"
  # Packer's default forward listens on every interface: keep the guest's SSH on loopback.
  qemuargs = [
    ["-netdev", "user,id=user.0,hostfwd=tcp:127.0.0.1:{{ .SSHHostPort }}-:22"],
    ["-cpu", "max"],
    ["-serial", "file:${var.output_dir}-console.log"],
  ]
  communicator         = "ssh"
  ssh_host             = "127.0.0.1"
  ssh_username         = "root"
  ssh_private_key_file = var.ssh_private_key_file
  ssh_timeout          = "15m"
  output_directory     = var.output_dir
  vm_name              = "${var.image_name}.qcow2"
  shutdown_command     = "systemctl poweroff"
  shutdown_timeout     = "5m"
}

build {
  sources = ["source.qemu.image"]

  provisioner "ansible" {
    playbook_file = "${path.root}/provision.yml"
    user          = "root"
    # Ansible connects straight to the loopback forward instead of through packer's SSH proxy.
    use_proxy = false
    ansible_env_vars = [
      "ANSIBLE_CONFIG=${path.root}/ansible.cfg",
      "ANSIBLE_COLLECTIONS_PATH=${var.collections_path}",
    ]
    extra_arguments = concat(
      ["-e", "image_common_name=${var.image_name}", "-e", "image_common_version=${var.image_version}",
      "-e", "image_packages_out=${var.packages_out}"],
      var.extra_vars_file == "" ? [] : ["-e", "@${var.extra_vars_file}"]
    )
  }
}
