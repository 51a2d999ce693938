# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""Which accelerator the VMs get: KVM only where it really works (usable /dev/kvm and vmx/svm), else TCG.

Read by host/checks.py (the host facts) and libvirt_cluster (the domain type); no libvirt needed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.aihow.hyperscaler.plugins.module_utils.common.errors import HyperscalerError


CPUINFO_PATH = "/proc/cpuinfo"
KVM_PATH = "/dev/kvm"
KVM_REMEDIATION = (
    "enable VT-x/AMD-V in the firmware (on a VM: expose vmx/svm to it, nested virtualisation), "
    "load kvm_intel or kvm_amd, and make /dev/kvm read-writable for libvirt (group kvm); "
    "or set accelerator to auto or tcg to run the VMs under TCG software emulation (much slower)"
)


def _virt_flags(cpuinfo_path):
    try:
        with open(cpuinfo_path) as handle:
            text = handle.read()
    except (IOError, OSError) as exc:
        return None, "%s cannot be read (%s)" % (cpuinfo_path, exc.strerror or exc)
    flags = set()
    for line in text.splitlines():
        if re.match(r"^\s*flags\s*:", line):
            flags.update(line.split(":", 1)[1].split())
    found = sorted(flags & {"vmx", "svm"})
    if not found:
        return None, "the CPU flags in %s have neither vmx nor svm (no hardware virtualisation exposed)" % cpuinfo_path
    return found[0], None


def _kvm_rw(kvm_path):
    try:
        fd = os.open(kvm_path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        return "%s cannot be opened read-write (%s)" % (kvm_path, exc.strerror or exc)
    os.close(fd)
    return None


def detect_accelerator(requested="auto", cpuinfo_path="/proc/cpuinfo", kvm_path="/dev/kvm"):
    """('kvm'|'tcg', reason). KVM only when kvm_path opens read-write AND vmx|svm is in cpuinfo.

    A /dev/kvm node alone proves nothing (nested VMs often have one that fails), so both are
    checked. ``requested='kvm'`` on a host without usable KVM raises HyperscalerError.
    """
    if requested not in ("auto", "kvm", "tcg"):
        raise HyperscalerError("accelerator must be auto, kvm or tcg, not '%s'" % requested)
    if requested == "tcg":
        return "tcg", "TCG software emulation was requested (accelerator: tcg)"
    flag, flag_problem = _virt_flags(cpuinfo_path)
    kvm_problem = _kvm_rw(kvm_path)
    problems = [p for p in (kvm_problem, flag_problem) if p]
    if not problems:
        return "kvm", "KVM is usable: %s opens read-write and the CPU has %s" % (kvm_path, flag)
    if requested == "kvm":
        raise HyperscalerError(
            "accelerator 'kvm' was requested but KVM is not usable on this host: %s. Remediation: %s"
            % ("; ".join(problems), KVM_REMEDIATION), problems=problems)
    return "tcg", "TCG software emulation is used because KVM is not usable: %s" % "; ".join(problems)
