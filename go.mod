module github.com/meshcast/meshcast

go 1.26.8

require (
	github.com/songgao/water v0.0.0-20200317203138-2b4b6d7c09d8
	github.com/vishvananda/netlink v1.3.1
	golang.org/x/sys v0.50.0
)

require github.com/vishvananda/netns v0.0.5

require (
	github.com/google/gopacket v1.1.19
	golang.org/x/net v0.62.0
)
