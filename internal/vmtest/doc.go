// Package vmtest checks meshcast's multicast delivery on a kernel booted
// under qemu. Its test, TestVMDelivery, runs inside the virtual machine that
// scripts/vmtest.sh (make vmtest) boots with an older distribution kernel:
// three meshcast daemons in network namespaces, one sender and two
// receivers, first with GRE and then with VXLAN, default flags otherwise.
// It asserts that every receiver got every datagram and that the offloads
// meshcast status reports fit the kernel, and prints one result line per
// encapsulation for the script's table.
//
// On a development host the test skips unless MESHCAST_VMTEST=1: it is
// meant for the guest, where it is the only thing running.
package vmtest
