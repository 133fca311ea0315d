// replica-net: a service's private network: a named netns, a veth from a bridge, a leased address, a route.
// A doorway: the commands are NetTool's, in the Replica module; Tool.main parses, runs, prints, exits.
import Replica
import ReplicaKit

NetTool.main()
