import Testing
import KSRModules
import StarlingTesting
import StarlingKEMI

@Suite("starling api --luals: annotations for the Lua language server")
struct LuaLSAnnotationTests {
    @Test func annotationsAreValidLuaAndComplete() {
        let text = KSRModules.luaLSAnnotations()
        let dir = makeTempDir([
            KSRModules.luaLSFileName: text,
            RouteTestRunner.luaLSFileName: RouteTestRunner.luaLSAnnotations,
        ])
        let ksr = dir + "/" + KSRModules.luaLSFileName
        let dsl = dir + "/" + RouteTestRunner.luaLSFileName
        // Parses, and runs: the stubs define every function of the KSR table.
        let check = """
            assert(loadfile('\(dsl)'))
            dofile('\(ksr)')
            assert(type(KSR.sl.sl_send_reply) == 'function')
            assert(type(KSR.x.exit) == 'function' and type(KSR.x.modf) == 'function')
            assert(type(KSR.forward) == 'function' and type(KSR.pv.sets) == 'function')
            """
        #expect(runProgram(["lua5.4", "-e", check]) == 0)

        #expect(text.hasPrefix("---@meta\n"))
        #expect(text.contains("---@class KSR\n"))
        #expect(text.contains("---@field sl KSR.sl\n"))
        #expect(text.contains("---@class KSR.sl\n"))
        #expect(text.contains("---@param p1 integer\n---@param p2 string\n---@return integer\nfunction KSR.sl.sl_send_reply(p1, p2) end\n"))
        #expect(text.contains("function KSR.x.drop() end"))
        #expect(text.contains("function KSR.x.probe() end"))
        #expect(text.contains("---@return boolean\nfunction KSR.is_myself_ruri() end"))
        #expect(text.contains("---@return any\nfunction KSR.pv.get(p1) end"))
        // Every export appears.
        for e in KSRModules.exports() {
            #expect(text.contains("function \(e.qualifiedName)("), "\(e.qualifiedName) missing")
        }
    }
}
