// Package container reads the log files that container runtimes write: the CRI format of
// containerd, CRI-O and the kubelet, and the json-file format of Docker. It only parses;
// reading files is the agent's job.
//
// # Formats
//
// [ParseCRI] reads one line of the CRI format,
//
//	2016-10-06T00:17:09.669794202Z stdout F log content
//
// and [ParseDocker] one line of Docker's json-file driver,
//
//	{"log":"log content\n","stream":"stdout","time":"2016-10-06T00:17:09.669794202Z"}
//
// Both give a [Line]: the time the runtime read the output, the [Stream] it came from, the
// content without its newline, and whether the content is only a piece of a longer line.
// Neither allocates for the common forms; the content aliases the input, except for Docker
// lines whose JSON string holds escapes other than the final \n.
//
// # Long lines
//
// Runtimes cut long output lines into pieces (containerd and Docker at 16 KiB): CRI marks
// every piece but the last with the tag P, Docker leaves the newline off every piece but
// the last. A [Joiner] puts the pieces back together, per stream (a file holds the
// interleaved pieces of stdout and stderr), and bounds the size of what it builds.
//
// # Paths
//
// [MetaFromPath] reads the namespace, pod and container names from the paths the kubelet and
// Docker use, and [Meta.AppendJSON] writes them as the "kubernetes" member of a record.
package container
