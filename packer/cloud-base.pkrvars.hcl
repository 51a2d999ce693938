# The cloud-base golden image (template: packer/golden-image.pkr.hcl).
image_name = "cloud-base"
