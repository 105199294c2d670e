"""The workshop rehearsal (`make rehearse`): boot the configured Vagrant cluster, prove it with
`make verify` and the cluster labs, and write a go/no-go table.

plan.py reads the cluster the Vagrantfile would build and lists the steps; preflight.py refuses
a host that cannot boot it before anything starts; runner.py runs the steps with a log each;
report.py writes the table (Markdown and JSON) and reads each stage's bring-up time from
Ansible's profile_tasks output.
"""
