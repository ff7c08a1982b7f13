#!/usr/bin/env python3
"""The telehealth image, shown to work without a container runtime.

    k8s/tests/check_image.py TAG HOST_BINARY

1. Inspects the image (podman, vfs storage): non-root user 65532, the entrypoint, its size.
2. Unpacks its root filesystem and checks what is in it: no shell, no package manager, every
   file owned by root except the user's home.
3. Runs it as the image would run: in new mount and PID namespaces, chrooted into the root
   filesystem mounted read-only, as user 65532, with only a writable data folder mounted at
   /tmp; `telehealth up` serves the suite.
4. Calls it from outside through the gateway (mTLS and a token, with HOST_BINARY's `call`), and
   fetches the web client it serves.

Exit 0 when everything holds; every figure is printed.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

STORAGE = os.environ.get("TELEHEALTH_PODMAN_ROOT", "/var/cache/telehealth/containers")
# The image holds one binary, its libraries and the web client.
MAX_IMAGE_BYTES = 120 * 1024 * 1024
SHELLS = {"sh", "bash", "dash", "ash", "busybox", "zsh", "ksh"}
PACKAGE_TOOLS = {"apt", "apt-get", "dpkg", "apk", "yum", "dnf", "rpm", "pip"}
GATEWAY = "127.0.0.1:18443"
SIGN_IN = "127.0.0.1:18444"


def podman(*args, capture=True):
    command = ["podman", "--root", STORAGE, "--storage-driver", "vfs", *args]
    return subprocess.run(command, check=True, capture_output=capture, text=True).stdout


def fail(message):
    print(f"FAILED: {message}")
    sys.exit(1)


def inspect(tag):
    info = json.loads(podman("image", "inspect", tag))[0]
    config = info["Config"]
    size = info["Size"]
    print(f"image {tag}: user {config.get('User')}, entrypoint {config.get('Entrypoint')}, "
          f"{size / 1024 / 1024:.1f} MiB")
    if config.get("User") != "65532:65532":
        fail(f"the image runs as {config.get('User')!r}, not the non-root 65532:65532")
    if config.get("Entrypoint") != ["/usr/local/bin/telehealth"]:
        fail(f"unexpected entrypoint {config.get('Entrypoint')}")
    if size > MAX_IMAGE_BYTES:
        fail(f"the image is {size} bytes, over {MAX_IMAGE_BYTES}")
    return config


def unpack(tag, into):
    archive = os.path.join(into, "image.tar")
    podman("save", "--format", "docker-archive", "-o", archive, tag)
    root = os.path.join(into, "rootfs")
    os.makedirs(root)
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))[0]
        for layer in manifest["Layers"]:
            with tarfile.open(fileobj=outer.extractfile(layer)) as inner:
                inner.extractall(root, numeric_owner=True, filter="fully_trusted")
    os.remove(archive)
    return root


def check_contents(root):
    files = 0
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, root)
            files += 1
            if name in SHELLS:
                fail(f"the image holds a shell: /{relative}")
            if name in PACKAGE_TOOLS:
                fail(f"the image holds a package tool: /{relative}")
            owner = os.lstat(path).st_uid
            if owner != 0:
                fail(f"/{relative} belongs to uid {owner}, not root")
    for needed in ["usr/local/bin/telehealth", "etc/passwd", "etc/ssl/certs/ca-certificates.crt",
                   "usr/share/telehealth/web/index.html"]:
        if not os.path.exists(os.path.join(root, needed)):
            fail(f"the image lacks /{needed}")
    print(f"root filesystem: {files} files, no shell, no package tool, owned by root")


def run_as_the_image(root, data):
    """`telehealth up` in the image's root filesystem, read-only, as 65532; the data at /tmp."""
    for point in ["proc", "dev"]:
        os.makedirs(os.path.join(root, point), exist_ok=True)
    os.chown(data, 65532, 65532)
    script = f"""
set -e
mount --bind {root} {root}
mount -o remount,bind,ro {root}
mount --bind {data} {root}/tmp
mount -t proc proc {root}/proc
mount --rbind /dev {root}/dev
exec chroot --userspec=65532:65532 {root} /usr/local/bin/telehealth --data-dir /tmp/data up --no-demo --no-web
"""
    environment = {
        "TELEHEALTH_GATEWAY__LISTEN": GATEWAY,
        "TELEHEALTH_GATEWAY__SIGN_IN_LISTEN": SIGN_IN,
        "TELEHEALTH_GATEWAY__WEB_ROOT": "/usr/share/telehealth/web",
        "HOME": "/home/nonroot",
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    }
    log = open(os.path.join(data, "up.log"), "w")
    process = subprocess.Popen(["unshare", "--mount", "--pid", "--fork", "sh", "-c", script],
                               env=environment, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    return process


def wait_for(path, process, data, timeout=90):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if process.poll() is not None or time.time() > deadline:
            print(open(os.path.join(data, "up.log")).read())
            fail("the suite in the image did not start")
        time.sleep(0.5)


def call_through_gateway(binary, data_dir):
    pki = os.path.join(data_dir, "pki")
    device = os.path.join(pki, "devices", "doctor-workstation")
    token = subprocess.run(
        [binary, "--data-dir", data_dir, "token", "mint", "--sub", "dr-image", "--role", "doctor",
         "--org", "cds-image", "--bind-cert", device + ".pem"],
        check=True, capture_output=True, text=True).stdout.strip()
    answer = subprocess.run(
        [binary, "--data-dir", data_dir, "call", "SchedulingService/ListAppointments", "{}",
         "--gateway", GATEWAY, "--cert", device + ".pem", "--key", device + "-key.pem",
         "--token", token],
        capture_output=True, text=True)
    if answer.returncode != 0:
        fail(f"the call through the image's gateway failed: {answer.stderr}")
    print(f"call through the gateway: SchedulingService/ListAppointments answered {answer.stdout.strip()[:80]}")
    # The gateway speaks HTTP/2 (as browsers do with it): curl, built with nghttp2.
    page = subprocess.run(
        ["curl", "--http2", "--silent", "--show-error", "--cacert", os.path.join(pki, "ca.pem"),
         "--cert", device + ".pem", "--key", device + "-key.pem",
         "--write-out", "\n%{http_code} %{http_version}", f"https://{GATEWAY}/"],
        capture_output=True, text=True, timeout=20)
    body, _, status = page.stdout.rpartition("\n")
    if page.returncode != 0 or not status.startswith("200") or "<html" not in body.lower():
        fail(f"the web client is not served: {status} {page.stderr}")
    print(f"web client served from the image: {len(body)} bytes of HTML over HTTP/{status.split()[1]}")


def main():
    tag, binary = sys.argv[1], sys.argv[2]
    inspect(tag)
    work = tempfile.mkdtemp(prefix="telehealth-image-")
    process = None
    try:
        root = unpack(tag, work)
        check_contents(root)
        data = os.path.join(work, "data")
        os.makedirs(data)
        started = time.time()
        process = run_as_the_image(root, data)
        wait_for(os.path.join(data, "data", "connection.json"), process, data)
        owner = os.stat(os.path.join(data, "data", "connection.json")).st_uid
        if owner != 65532:
            fail(f"the suite wrote its files as uid {owner}, not 65532")
        print(f"the suite started from the image in {time.time() - started:.1f} s "
              "(read-only root, its files written as uid 65532, no shell)")
        call_through_gateway(binary, os.path.join(data, "data"))
    finally:
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)
    print("image check passed")


if __name__ == "__main__":
    main()
