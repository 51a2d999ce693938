# The hpc-base golden image (template: packer/golden-image.pkr.hcl).
image_name = "hpc-base"
