import ArgumentParser

Starling.main()
