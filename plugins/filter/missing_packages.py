# -*- coding: utf-8 -*-
# Copyright: (c) 2026, aihow
# Apache License 2.0 (see LICENSE)
"""Filter missing_packages: the Debian packages of a list that dpkg-query does not show as installed."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError


def missing_packages(packages, dpkg_lines):
    """packages not reported ``NAME ii `` by ``dpkg-query -W -f='${Package} ${db:Status-Abbrev}\\n'``.

    A name with a version or architecture (``pkg=1.2``, ``pkg:amd64``) never matches, so the role's apt
    task still runs for it. Order of ``packages`` is kept.
    """
    if isinstance(packages, str) or not isinstance(packages, (list, tuple)):
        raise AnsibleFilterError("missing_packages expects a list of package names, got %r" % (packages,))
    installed = set()
    for line in dpkg_lines or []:
        fields = str(line).split(" ", 1)
        if len(fields) == 2 and fields[1].startswith("ii "):
            installed.add(fields[0])
    return [p for p in packages if p not in installed]


class FilterModule(object):
    def filters(self):
        return {"missing_packages": missing_packages}
