package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// podExecCommand is the agent's second face: the first program of every container
// process. The agent starts it in a mount and UTS namespace of its own (see
// container.start); it enters the Pod's network namespace, bind-mounts the Pod's
// volumes where the container expects them, sets the host name and executes the
// container's binary in its place, so the process the agent waits on is the
// container's.
//
//	postern-node pod-exec --netns /run/netns/X --hostname H --mount SRC=DST[=ro] ... -- BINARY ARGS...
const podExecCommand = "pod-exec"

func podExec(args []string) {
	if err := podExecErr(args); err != nil {
		fmt.Fprintln(os.Stderr, "postern-node pod-exec:", err)
		os.Exit(127)
	}
}

func podExecErr(args []string) error {
	var netns, hostname, workdir string
	var mounts [][3]string
	i := 0
	for ; i < len(args) && args[i] != "--"; i++ {
		if i+1 >= len(args) {
			return fmt.Errorf("%s needs a value", args[i])
		}
		v := args[i+1]
		switch args[i] {
		case "--netns":
			netns = v
		case "--hostname":
			hostname = v
		case "--workdir":
			workdir = v
		case "--mount":
			parts := strings.Split(v, "=")
			if len(parts) < 2 || len(parts) > 3 {
				return fmt.Errorf("--mount %q: want SRC=DST[=ro]", v)
			}
			var m [3]string
			copy(m[:], parts)
			mounts = append(mounts, m)
		default:
			return fmt.Errorf("unknown option %q", args[i])
		}
		i++
	}
	if i+1 >= len(args) {
		return fmt.Errorf("no program after --")
	}
	prog := args[i+1:]

	// setns applies to the calling thread only; the exec below is made from it, so
	// the program starts in the namespace.
	runtime.LockOSThread()
	if netns != "" {
		f, err := os.Open(netns)
		if err != nil {
			return err
		}
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("enter %s: %w", netns, err)
		}
		_ = f.Close()
	}
	if hostname != "" {
		if err := unix.Sethostname([]byte(hostname)); err != nil {
			return fmt.Errorf("host name: %w", err)
		}
	}
	for _, m := range mounts {
		if err := bindMount(m[0], m[1], m[2] == "ro"); err != nil {
			return err
		}
	}
	if workdir != "" {
		if err := os.Chdir(workdir); err != nil {
			return fmt.Errorf("working directory: %w", err)
		}
	}
	return syscall.Exec(prog[0], prog, os.Environ())
}

// bindMount mounts src on dst in this (private) mount namespace, making dst first
// when it is missing: a folder for a folder, an empty file for a file (a subPath).
func bindMount(src, dst string, readOnly bool) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if st.IsDir() {
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
	} else if _, err := os.Stat(dst); err != nil {
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		_ = f.Close()
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("mount %s on %s: %w", src, dst, err)
	}
	if readOnly {
		if err := unix.Mount("", dst, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("mount %s read-only: %w", dst, err)
		}
	}
	return nil
}
