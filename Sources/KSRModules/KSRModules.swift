// KSRModules
